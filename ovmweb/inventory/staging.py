"""The staging area: an uploaded ISO or OVA waits here, on the manager, until its job stores it.

Rules kept here, for every upload (web page or API):

- An upload is at most ``OVMWEB_UPLOAD_MAX_BYTES`` and must leave
  ``OVMWEB_UPLOAD_STAGING_RESERVE_BYTES`` free in the staging area; the HTTP
  layer (ovmweb/web/uploads.py) applies both to the declared Content-Length
  before the body is parsed, and counts the bytes as they are parsed.
- A staged file lives directly in ``staging_dir()``. It is removed when its job
  ends, however it ends (success, failure, abort while running, abort while
  still queued, failure by recovery), or when the job row is deleted.
- Nothing outside ``staging_dir()`` is ever removed on a job's behalf: job
  parameters are data, and a crafted path must not delete another file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid as uuidlib
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

log = logging.getLogger(__name__)

# Job parameters that name a staged file.
STAGED_PARAMS = ("staged",)
_CHUNK = 1024 * 1024


class UploadRefused(ValidationError):
    """An upload the staging area does not take; ``status`` is the HTTP answer before any view runs."""

    status = 400

    def __init__(self, message: str):
        super().__init__({"file": [message]})
        self.text = message


class UploadTooLarge(UploadRefused):
    status = 413


class StagingFull(UploadRefused):
    status = 507


def staging_dir() -> Path:
    path = Path(settings.OVMWEB_UPLOAD_STAGING_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def max_bytes() -> int:
    return settings.OVMWEB_UPLOAD_MAX_BYTES


def check_size(size: int | None) -> None:
    """Refuse an upload of ``size`` bytes (None: not known yet) over the cap or the free space."""
    if size is None:
        return
    if size > max_bytes():
        raise UploadTooLarge(
            _("The upload is %(size)d bytes; at most %(max)d are accepted.") % {"size": size, "max": max_bytes()}
        )
    check_free_space(size)


def check_free_space(size: int) -> None:
    free = shutil.disk_usage(staging_dir()).free
    if size + settings.OVMWEB_UPLOAD_STAGING_RESERVE_BYTES > free:
        raise StagingFull(
            _("The manager's staging area has %(free)d bytes free; a %(size)d-byte upload does not fit.")
            % {"free": free, "size": size}
        )


def _temporary_path(fileobj) -> str | None:
    getter = getattr(fileobj, "temporary_file_path", None)
    return getter() if callable(getter) else None


def _copy_capped(fileobj, dest: Path) -> None:
    written = 0
    with open(dest, "wb") as out:
        while chunk := fileobj.read(_CHUNK):
            written += len(chunk)
            if written > max_bytes():
                raise UploadTooLarge(_("The upload is over %(max)d bytes.") % {"max": max_bytes()})
            out.write(chunk)


def stage(fileobj, *, suffix: str = "") -> Path:
    """Put an uploaded file into the staging area and return its path there.

    A file Django already streamed to disk (in the staging area itself:
    FILE_UPLOAD_TEMP_DIR) is renamed, not copied; anything else is copied,
    counting bytes against the cap. On failure nothing is left staged."""
    check_size(getattr(fileobj, "size", None))
    dest = staging_dir() / f"{uuidlib.uuid4().hex}{suffix}"
    source = _temporary_path(fileobj)
    if source is not None:
        with contextlib.suppress(OSError):  # another filesystem: copy below
            os.rename(source, dest)
            return dest
    try:
        _copy_capped(fileobj, dest)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return dest


@contextlib.contextmanager
def staged(fileobj, *, suffix: str = ""):
    """``stage`` for the caller's block: the file is removed again if the block raises
    (the job that was to own it was never queued)."""
    path = stage(fileobj, suffix=suffix)
    try:
        yield path
    except BaseException:
        discard(path)
        raise


def is_staged_path(path) -> bool:
    """Whether ``path`` names a file directly inside the staging area (symlinks resolved)."""
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError, TypeError, ValueError):
        return False
    return resolved.parent == staging_dir().resolve()


def discard(path) -> bool:
    """Remove a staged file; a path outside the staging area is refused (logged), never removed."""
    if not is_staged_path(path):
        log.warning("not removing %r: it is not in the staging area", path)
        return False
    Path(path).resolve().unlink(missing_ok=True)
    return True


def discard_for_job(job) -> None:
    """Remove the files a job staged, once the transaction ending (or deleting) it commits."""
    params = job.params if isinstance(job.params, dict) else {}
    for key in STAGED_PARAMS:
        path = params.get(key)
        if isinstance(path, str) and path:
            transaction.on_commit(lambda path=path: discard(path))
