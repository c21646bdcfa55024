"""The state directory (OVMWEB_VAR_DIR) and the secret key kept in it.

Invariants: the directory is mode 0700 and the files ovmweb leaves at its top
(database, secret key) are 0600, whatever an older version or a careless copy
left there; the secret key file is never visible, even for an instant, with
other modes or partly written, and two processes starting together on a fresh
directory end up with one key.

Imported by the settings, so it uses nothing but the standard library.
"""

from __future__ import annotations

import os
import secrets
import warnings
from pathlib import Path

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600


def make_private_by_default() -> None:
    """Every file and directory this process creates is private to its user (database,
    uploads, keys). Set before anything opens a file."""
    os.umask(PRIVATE_UMASK)


def prepare_var_dir(path: Path) -> None:
    """Create ``path`` 0700, or bring an existing one and the files at its top to 0700/0600.

    Only the top level is walked: with the directory itself 0700 nothing below it can be
    reached by another user, and repositories below it can hold many large files."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _chmod(path, DIR_MODE)
    for entry in path.iterdir():
        if entry.is_symlink():
            continue  # chmod follows links: never change a file outside the directory
        if entry.is_file():
            _chmod(entry, FILE_MODE)
        elif entry.is_dir():
            _chmod(entry, DIR_MODE)


def _chmod(path: Path, mode: int) -> None:
    try:
        if path.stat().st_mode & 0o777 != mode:
            path.chmod(mode)
    except PermissionError:
        # Not ours (a directory prepared by an administrator for another user): say so, go on.
        warnings.warn(f"ovmweb: cannot make {path} mode {mode:o}", RuntimeWarning, stacklevel=2)


def read_or_create_secret_key(path: Path) -> str:
    """The key in ``path``, made there first if missing.

    The key is written to a private temporary file (created with O_EXCL and mode 0600)
    and then hard-linked to its name: ``link`` fails if the name exists, so the first of
    two racing creators wins and the other reads the winner's key, never a half-written one."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(50))
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it first: use its key
    finally:
        tmp.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> str:
    key = path.read_text().strip()
    if not key:
        raise RuntimeError(f"{path} is empty: delete it to have a new secret key made")
    return key
