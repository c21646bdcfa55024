"""Where the server URL and the token come from: a flag, the environment
(``OVMWEB_URL``, ``OVMWEB_TOKEN``), or the file ``ovmweb login`` writes.

The file holds a credential: it is written with mode 0600 (its directory 0700),
and a copy others can read is reported, not used silently."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

CONFIG_ENV = "OVMWEB_CONFIG"


def config_path() -> Path:
    if explicit := os.environ.get(CONFIG_ENV):
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ovmweb" / "config.json"


def load(path: Path | None = None) -> dict:
    path = path or config_path()
    try:
        mode = path.stat().st_mode
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        print(f"ovmweb: ignoring {path}: {exc}", file=sys.stderr)
        return {}
    if mode & 0o077:
        print(f"ovmweb: warning: {path} can be read by others; run: chmod 600 {path}", file=sys.stderr)
    return data if isinstance(data, dict) else {}


def save(data: dict, path: Path | None = None) -> Path:
    path = path or config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Created 0600 from the start: never a moment where the token is readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.chmod(path, 0o600)  # an older file keeps its mode through O_CREAT
    return path
