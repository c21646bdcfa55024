"""schemathesis over the OpenAPI schema against the running application: no input
may produce a server error (issue "Bad input"). The script starts its own server
on a free loopback port with its own temporary database."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_server_error_for_any_generated_input():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    # The fuzzing phase keeps this within a few minutes; `bash scripts/schemathesis.sh`
    # alone also runs the (slower) coverage phase.
    env.update(
        PHASES="fuzzing", MAX_EXAMPLES="30", PY=sys.executable, ST=str(Path(sys.executable).with_name("schemathesis"))
    )
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "schemathesis.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-60:])
    assert result.returncode == 0, tail
    assert "passed" in result.stdout and "Server error" not in result.stdout, tail
