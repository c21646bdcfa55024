"""Inspection of disk images that come from outside: appliance disks, ISO files, files
found in a repository. Nothing from outside is stored or attached before it passed here.

A disk image can name other files that whoever opens it opens too: a qcow2 backing
file or external data file, the extents or the parent of a VMDK. QEMU, ``qemu-img`` and
libvirt's volume copy run as root on the servers, so one such name in a crafted file
(``/etc/shadow``, ``/dev/sda``) would hand the host's file to the guest, or copy it into
a repository. An image from outside must be self-contained: it is refused otherwise.

Two looks, both needed:

- the first bytes, read here: which format the file really is (its magic), a qcow2
  header's backing-file offset and external-data-file bit, a VMDK text descriptor's
  extents and parent. This runs before ``qemu-img``, so that it never opens a device a
  descriptor names;
- ``qemu-img info --output=json -f <recorded format> -U``: the format is always given
  (``qemu-img`` never probes), ``-U`` (force-share) reads an image a running VM holds,
  and the run has a timeout. Its report is checked for the same references.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

from django.utils.translation import gettext as _

from ovmweb.errors import Conflict

QEMU_IMG_TIMEOUT = 30
HEAD_BYTES = 64 * 1024  # a qcow2 header with its extensions, a VMDK descriptor
# (offset, magic, format) of every image format QEMU knows by its first bytes. A file
# with one of these is never taken for raw data (see ``check_declared_format``).
MAGICS: tuple[tuple[int, bytes, str], ...] = (
    (0, b"QFI\xfb", "qcow2"),  # qcow2, also qcow (v1): both can name a backing file
    (0, b"KDMV", "vmdk"),  # hosted sparse / streamOptimized extent
    (0, b"COWD", "vmdk"),  # ESX sparse extent
    (0, b"# Disk DescriptorFile", "vmdk"),  # text descriptor: every extent is another file
    (0, b"conectix", "vpc"),  # VHD
    (0, b"vhdxfile", "vhdx"),
    (0x40, b"\x7f\x10\xda\xbe", "vdi"),
    (0, b"QED\x00", "qed"),
    (0, b"LUKS\xba\xbe", "luks"),
    (0, b"WithoutFreeSpace", "parallels"),
    (0, b"WithouFreSpacExt", "parallels"),
    (0, b"Bochs Virtual HD Image", "bochs"),
    (0, b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop", "cloop"),
)
QCOW2_BACKING_OFFSET = struct.Struct(">Q")  # at byte 8
QCOW2_INCOMPATIBLE = struct.Struct(">Q")  # at byte 72, version 3 only
QCOW2_EXTERNAL_DATA_FILE = 1 << 2
VMDK_NO_PARENT = 0xFFFFFFFF
# An extent line of a VMDK descriptor: access, sectors, type, then a quoted file name.
_VMDK_EXTENT = re.compile(r'^\s*(RW|RDONLY|NOACCESS)\s+\d+\s+\w+\s+"([^"]*)"', re.MULTILINE)
_VMDK_PARENT_CID = re.compile(r"^\s*parentCID\s*=\s*([0-9a-fA-F]+)", re.MULTILINE)
_VMDK_PARENT_HINT = re.compile(r"^\s*parentFileNameHint\s*=", re.MULTILINE)

Runner = Callable[..., tuple[int, str, str]]


class UnsafeImage(Conflict):
    """An image that names other files, or is not what it was declared to be."""


def _refuse(name: str, problem: str) -> UnsafeImage:
    return UnsafeImage(_("%(file)s was refused: %(problem)s.") % {"file": name, "problem": problem})


def sniff_format(head: bytes) -> str | None:
    """The image format whose magic ``head`` starts with, or None (raw data, an ISO)."""
    for offset, magic, fmt in MAGICS:
        if head[offset : offset + len(magic)] == magic:
            return fmt
    return None


def _read_head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(HEAD_BYTES)


def check_declared_format(name: str, head: bytes, fmt: str) -> None:
    """A file recorded as raw (or as an ISO) must not be an image of another format.

    Our choice: such a file is refused, not "always opened as raw". Raw would be harmless
    only if every reader used raw, but libvirt probes the volumes of a ``dir`` pool and a
    volume copy (an appliance deploy, a clone) reads what it found: a qcow2 declared raw
    would have its backing file copied out of the host."""
    real = sniff_format(head)
    if fmt == "raw" and real is not None:
        raise _refuse(name, _("it is declared raw but is a %(real)s image") % {"real": real})
    if fmt != "raw" and real != fmt:
        raise _refuse(name, _("it is declared %(fmt)s but is not a %(fmt)s image") % {"fmt": fmt})


def _check_qcow2_header(name: str, head: bytes) -> None:
    if len(head) < 16:
        raise _refuse(name, _("its qcow2 header is truncated"))
    if QCOW2_BACKING_OFFSET.unpack_from(head, 8)[0]:
        raise _refuse(name, _("it has a backing file"))
    version = struct.unpack_from(">I", head, 4)[0]
    if version >= 3 and len(head) >= 80 and QCOW2_INCOMPATIBLE.unpack_from(head, 72)[0] & QCOW2_EXTERNAL_DATA_FILE:
        raise _refuse(name, _("it has an external data file"))


def check_vmdk_descriptor(name: str, text: str) -> None:
    """A VMDK text descriptor holds no data: its extents are other files, which QEMU would
    open wherever they are (``/dev/sda``). It is refused whatever it names, as is a parent."""
    extents = _VMDK_EXTENT.findall(text)
    if extents:
        files = ", ".join(sorted({f for _access, f in extents}))
        raise _refuse(name, _("it is a VMDK descriptor naming extent files (%(files)s)") % {"files": files})
    parent = _VMDK_PARENT_CID.search(text)
    if (parent and int(parent.group(1), 16) != VMDK_NO_PARENT) or _VMDK_PARENT_HINT.search(text):
        raise _refuse(name, _("it is a VMDK with a parent image"))


def check_head(name: str, head: bytes, fmt: str) -> None:
    """Everything the first bytes tell, before any other program opens the file."""
    check_declared_format(name, head, fmt)
    if fmt == "qcow2":
        _check_qcow2_header(name, head)
    elif fmt == "vmdk" and head.startswith(b"# Disk DescriptorFile"):
        check_vmdk_descriptor(name, head.decode("latin-1"))


def _local_run(argv: list[str], timeout: float = 60) -> tuple[int, str, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return 124, "", f"timed out after {timeout}s"
    except FileNotFoundError as exc:
        return 127, "", str(exc)
    return done.returncode, done.stdout, done.stderr


def qemu_img_info(path: str, fmt: str, *, run: Runner | None = None, name: str = "") -> dict:
    """``qemu-img info`` of ``path`` read as ``fmt`` (never probed), on this machine or through ``run``
    (a server's ``ServerFiles.run``). ``path`` is absolute: ``qemu-img`` would take a name such as
    ``json:{...}`` or ``nbd:...`` for options or a protocol."""
    name = name or path.rsplit("/", 1)[-1]
    if not path.startswith("/"):
        raise _refuse(name, _("its path is not absolute"))
    argv = ["qemu-img", "info", "--output=json", "-f", fmt, "-U", "--", path]
    code, out, err = (run or _local_run)(argv, timeout=QEMU_IMG_TIMEOUT)
    if code != 0:
        detail = (err or out).strip().splitlines()[-1:] or [f"exit status {code}"]
        raise _refuse(name, _("qemu-img cannot read it as %(fmt)s: %(error)s") % {"fmt": fmt, "error": detail[0]})
    try:
        return json.loads(out)
    except ValueError as exc:
        raise _refuse(name, _("qemu-img gave no report")) from exc


def check_info(name: str, info: dict, fmt: str) -> None:
    """The references ``qemu-img info`` reports: a backing file, a data file, extents or a parent."""
    if info.get("format") != fmt:
        raise _refuse(name, _("qemu-img reads it as %(real)s, not %(fmt)s") % {"real": info.get("format"), "fmt": fmt})
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise _refuse(name, _("it has a backing file (%(b)s)") % {"b": info.get("backing-filename")})
    data = (info.get("format-specific") or {}).get("data") or {}
    if data.get("data-file"):
        raise _refuse(name, _("it has an external data file (%(f)s)") % {"f": data["data-file"]})
    # A sparse VMDK lists itself as its one extent; any other file is a reference out.
    others = [e.get("filename", "") for e in data.get("extents") or [] if e.get("filename") != info.get("filename")]
    if others:
        raise _refuse(name, _("it names extent files (%(files)s)") % {"files": ", ".join(others)})
    if data.get("parent-cid", VMDK_NO_PARENT) != VMDK_NO_PARENT:
        raise _refuse(name, _("it is a VMDK with a parent image"))


def image_check(path: str | Path, fmt: str, *, name: str = "") -> dict:
    """Refuse (``UnsafeImage``) a local image that is not a self-contained ``fmt`` image;
    return ``qemu-img info``'s report of it otherwise. ``name`` is what the error calls it
    (a staged upload's own name is meaningless to the user)."""
    path = Path(path).absolute()
    name = name or path.name
    if path.is_symlink() or not path.is_file():
        raise _refuse(name, _("it is not a regular file"))
    check_head(name, _read_head(path), fmt)
    info = qemu_img_info(str(path), fmt, name=name)
    check_info(name, info, fmt)
    return info


def remote_image_check(path: str, fmt: str, *, run: Runner) -> dict:
    """``image_check`` of a file on a server (``run`` is its ``ServerFiles.run``). The first bytes
    are read there with ``od``, in hex, so that the same header checks run before ``qemu-img``."""
    name = path.rsplit("/", 1)[-1]
    code, out, err = run(["od", "-An", "-v", "-tx1", "-N", str(HEAD_BYTES), "--", path], timeout=QEMU_IMG_TIMEOUT)
    if code != 0:
        raise _refuse(name, _("it cannot be read: %(error)s") % {"error": err.strip()})
    check_head(name, bytes.fromhex(out), fmt)
    info = qemu_img_info(path, fmt, run=run)
    check_info(name, info, fmt)
    return info
