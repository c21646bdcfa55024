"""Settings for the test suite: same engines, isolated state."""

import os
import tempfile

os.environ.setdefault("OVMWEB_VAR_DIR", tempfile.mkdtemp(prefix="ovmweb-test-"))

from .base import *  # noqa: F403
from .base import DATABASES

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["TEST"] = {"NAME": os.path.join(os.environ["OVMWEB_VAR_DIR"], "test.sqlite3")}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
OVMWEB_EMBEDDED_WORKER = False
DEBUG = False
