"""The kernel and initrd of a PVM, loaded from its mounted install tree (seed 7.1, 7.2).

A PVM has no BIOS: the hypervisor boots its kernel directly. The administrator
mounts the install ISO on an HTTP, FTP or NFS server and gives its URL as the
VM's network boot path (``pvm_boot_url``). At every start the kernel and initrd
are placed in ``<repo>/VirtualMachines/<uuid>/{vmlinuz,initrd.img}`` on the
server the VM starts on, where the domain definition points:

- HTTP(S)/FTP: the manager fetches them and streams them to the server (written
  directly for a ``local`` server, through SFTP on the pinned SSH connection
  otherwise).
- NFS (``nfs://host/export/path``): the *server* mounts the export read-only
  (``mount -t nfs``; needs root and the NFS client on the server), copies the
  files out of the mount and unmounts it again. The manager never mounts NFS.

The usual layouts of Oracle Linux / RHEL install trees are tried in order:
``images/pxeboot/`` then ``isolinux/``. They are fetched again only when the URL
changed since the last successful fetch (a stamp file records it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from django.utils.translation import gettext as _

from ovmweb.errors import Conflict

from ..models import Server, VirtualMachine
from . import fetch
from .server_files import ServerFiles, server_files

PVM_BOOT_LAYOUTS: tuple[tuple[str, str], ...] = (
    ("images/pxeboot/vmlinuz", "images/pxeboot/initrd.img"),
    ("isolinux/vmlinuz", "isolinux/initrd.img"),
)
STAMP = "pvm-boot.json"
KERNEL_MAX_BYTES = 128 * 1024 * 1024
INITRD_MAX_BYTES = 1024 * 1024 * 1024
# gzip, xz, zstd, bzip2, lz4 (legacy frame, what the kernel's unpacker takes), and cpio
# (newc, crc, odc): what the kernel unpacks as an initramfs.
INITRD_MAGICS = (b"\x1f\x8b", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd", b"BZh", b"\x02\x21\x4c\x18", b"0707")
NFS_MOUNT_OPTIONS = "ro,nosuid,nodev,noexec,nolock,soft"
# Exists as anything, a dangling link included.
_EXISTS = '[ -e "$1" ] || [ -L "$1" ]'
# $1 source in the mount, $2 the .part to write, $3 the mount point, $4 the size cap.
# A link (last component) or a non-regular file is refused; so is a source whose real
# path leaves the mount (a linked directory on the way). The copy opens the resolved
# path with O_NOFOLLOW and stops one byte past the cap.
_NFS_COPY = r"""
[ -L "$1" ] && { echo "it is a symbolic link" >&2; exit 3; }
[ -f "$1" ] || { echo "it is not a regular file" >&2; exit 3; }
root=$(readlink -e -- "$3") && real=$(readlink -e -- "$1") || { echo "it cannot be resolved" >&2; exit 3; }
case "$real" in "$root"/*) ;; *) echo "it leads out of the install tree ($real)" >&2; exit 3;; esac
rm -f -- "$2"
dd if="$real" of="$2" iflag=nofollow,count_bytes oflag=nofollow count=$(($4 + 1)) bs=1M status=none || exit 3
"""
_CHUNK = 1024 * 1024
# Every x86 Linux bzImage carries the boot protocol magic "HdrS" at 0x202.
_BZIMAGE_MAGIC_OFFSET = 0x202
_BZIMAGE_MAGIC = b"HdrS"


class InstallSourceError(Conflict):
    """The install tree of a PVM cannot be reached or lacks a kernel/initrd."""


def vm_directory(vm: VirtualMachine) -> str:
    if vm.repository is None:
        raise InstallSourceError(_("PVM %(vm)s has no repository to keep its kernel and initrd in.") % {"vm": vm.name})
    return f"{vm.repository.path}/VirtualMachines/{vm.uuid}"


def pvm_boot_paths(vm: VirtualMachine) -> tuple[str, str]:
    """Where the domain definition of a PVM finds its kernel and initrd on the server."""
    base = vm_directory(vm)
    return f"{base}/vmlinuz", f"{base}/initrd.img"


def _open(url: str, check_abort: Callable[[], None] | None = None) -> fetch.Download | None:
    """An open download, or None when the file is not there (so the next layout is tried).
    The URL and every redirect are checked against the import rules of fetch.py."""
    try:
        return fetch.open_url(url, check_abort=check_abort)
    except fetch.FetchFailed as exc:
        if exc.missing:
            return None
        raise InstallSourceError(
            _("Cannot reach the install tree at %(url)s: %(error)s") % {"url": url, "error": exc}
        ) from exc
    except fetch.UrlRefused as exc:
        raise InstallSourceError(
            _("The install tree at %(url)s is refused: %(error)s") % {"url": url, "error": exc}
        ) from exc


def _join(url: str, relative: str) -> str:
    """A file below the install tree; a query or fragment in ``url`` is refused, since it
    would move the path appended after it."""
    try:
        return fetch.join_url(url, relative)
    except fetch.UrlRefused as exc:
        raise InstallSourceError(
            _("The install tree at %(url)s is refused: %(error)s") % {"url": url, "error": exc}
        ) from exc


@dataclass(frozen=True)
class BootFile:
    """What a kernel or an initrd must look like before it is kept: its first bytes and
    its size. A tree from outside could hand anything to the hypervisor to boot."""

    what: str
    max_bytes: int
    head_bytes: int  # how many first bytes ``check`` needs
    check: Callable[[bytes], bool]


def _is_bzimage(head: bytes) -> bool:
    return head[_BZIMAGE_MAGIC_OFFSET : _BZIMAGE_MAGIC_OFFSET + 4] == _BZIMAGE_MAGIC


def _is_initrd(head: bytes) -> bool:
    return head.startswith(INITRD_MAGICS)


KERNEL = BootFile("kernel", KERNEL_MAX_BYTES, _BZIMAGE_MAGIC_OFFSET + 4, _is_bzimage)
INITRD = BootFile("initrd", INITRD_MAX_BYTES, max(len(m) for m in INITRD_MAGICS), _is_initrd)


def check_boot_file(kind: BootFile, head: bytes, size: int, where: str) -> None:
    """Refuse a kernel without a bzImage header, an initrd that is neither a compressed
    image nor a cpio archive, or either one over its size cap."""
    if size > kind.max_bytes:
        raise InstallSourceError(
            _("%(where)s is larger than %(n)d bytes, the cap for a Linux %(what)s.")
            % {"where": where, "what": kind.what, "n": kind.max_bytes}
        )
    if not kind.check(head[: kind.head_bytes]):
        message = (
            _("%(where)s is not a Linux kernel (no bzImage header).")
            if kind is KERNEL
            else _("%(where)s is not an initrd (neither a gzip, xz, zstd, bzip2 or lz4 image nor a cpio archive).")
        )
        raise InstallSourceError(message % {"where": where})


class _Head:
    """Streams a response in chunks, checking it as a ``BootFile`` on the way: the first
    bytes as soon as they are in, the size at every chunk. A refusal raises inside the
    write, which then removes its ``.part``: a refused file never reaches its name."""

    def __init__(self, response, progress: Callable[[int], None] | None, kind: BootFile, where: str):
        self.response, self.progress, self.head, self.done = response, progress, b"", 0
        self.kind, self.where, self.checked = kind, where, False

    def _take(self, chunk: bytes) -> None:
        if len(self.head) < 1024:
            self.head += chunk[: 1024 - len(self.head)]
        self.done += len(chunk)
        if self.done > self.kind.max_bytes or (not self.checked and len(self.head) >= self.kind.head_bytes):
            check_boot_file(self.kind, self.head, self.done, self.where)
            self.checked = True

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.response.read(_CHUNK):
            self._take(chunk)
            if self.progress:
                self.progress(self.done)
            yield chunk
        if not self.checked:  # shorter than the header it should have
            check_boot_file(self.kind, self.head, self.done, self.where)


def _fetch_url(
    files: ServerFiles,
    url: str,
    kernel_path: str,
    initrd_path: str,
    progress: Callable[[int], None] | None,
    check_abort: Callable[[], None] | None = None,
) -> tuple[str, str]:
    tried = []
    for kernel_rel, initrd_rel in PVM_BOOT_LAYOUTS:
        kernel_url, initrd_url = _join(url, kernel_rel), _join(url, initrd_rel)
        response = _open(kernel_url, check_abort)
        if response is None:
            tried.append(kernel_url)
            continue
        with response:
            files.write(kernel_path, _Head(response, progress, KERNEL, kernel_url))
        response = _open(initrd_url, check_abort)
        if response is None:
            raise InstallSourceError(
                _("The install tree at %(url)s has %(kernel)s but no %(initrd)s.")
                % {"url": url, "kernel": kernel_rel, "initrd": initrd_rel}
            )
        with response:
            files.write(initrd_path, _Head(response, progress, INITRD, initrd_url))
        return kernel_rel, initrd_rel
    raise InstallSourceError(
        _(
            "No kernel in the install tree at %(url)s (tried %(tried)s). Give the URL of the root of a mounted "
            "install ISO."
        )
        % {"url": url, "tried": ", ".join(tried)}
    )


def nfs_source(url: str) -> str:
    """``nfs://host/export/dir`` -> ``host:/export/dir`` (the form ``mount -t nfs`` takes).
    A host or path that could be read as an option of ``mount`` is refused."""
    parts = urlsplit(url)
    host, path = parts.hostname or "", unquote(parts.path) or "/"
    if not host or host.startswith("-") or not path.startswith("/") or any(c in host + path for c in "\n\0,"):
        raise InstallSourceError(_("%(url)s is not a usable nfs://host/path URL.") % {"url": url})
    return f"{host}:{path}"


def _mount(files: ServerFiles, source: str, mount_point: str) -> None:
    # Read-only, and nothing on the export is a device, runs, or gains privileges on the server.
    argv = ["mount", "-t", "nfs", "-o", NFS_MOUNT_OPTIONS, "--", source, mount_point]
    code, out, err = files.run(argv, timeout=90)
    if code != 0:
        raise InstallSourceError(
            _("The server cannot mount the install tree %(src)s: %(error)s")
            % {"src": source, "error": (err or out).strip() or f"exit status {code}"}
        )


def _nfs_layout(files: ServerFiles, url: str, mount_point: str) -> tuple[str, str]:
    """The first layout whose kernel is there (as anything: the copy says what is wrong with it)."""
    tried = []
    for kernel_rel, initrd_rel in PVM_BOOT_LAYOUTS:
        if files.run(["sh", "-c", _EXISTS, "sh", f"{mount_point}/{kernel_rel}"])[0] != 0:
            tried.append(kernel_rel)
            continue
        if files.run(["sh", "-c", _EXISTS, "sh", f"{mount_point}/{initrd_rel}"])[0] != 0:
            raise InstallSourceError(
                _("The install tree at %(url)s has %(kernel)s but no %(initrd)s.")
                % {"url": url, "kernel": kernel_rel, "initrd": initrd_rel}
            )
        return kernel_rel, initrd_rel
    raise InstallSourceError(
        _("No kernel in the install tree at %(url)s (tried %(tried)s).") % {"url": url, "tried": ", ".join(tried)}
    )


def _nfs_copy(files: ServerFiles, mount_point: str, rel: str, target: str, kind: BootFile) -> None:
    """Copy one file out of the mount into ``target`` on the server, only if it is a regular
    file whose real path stays inside the mount, within its size cap and of its type."""
    part = target + ".part"
    code, _out, err = files.run(
        ["sh", "-c", _NFS_COPY, "sh", f"{mount_point}/{rel}", part, mount_point, str(kind.max_bytes)], timeout=300
    )
    if code != 0:
        raise InstallSourceError(
            _("%(file)s of the install tree was refused: %(error)s") % {"file": rel, "error": err.strip()}
        )
    try:
        code, out, err = files.run(["od", "-An", "-v", "-tx1", "-N", "1024", "--", part])
        size_code, size, _err = files.run(["stat", "-c", "%s", "--", part])
        if code != 0 or size_code != 0:
            raise InstallSourceError(_("%(file)s cannot be read back: %(error)s") % {"file": rel, "error": err})
        check_boot_file(kind, bytes.fromhex(out), int(size), rel)
        files.run(["mv", "-f", "--", part, target])
    finally:
        files.run(["rm", "-f", "--", part])


def _fetch_nfs(files: ServerFiles, url: str, base: str, kernel_path: str, initrd_path: str) -> tuple[str, str]:
    mount_point = f"{base}/.install-tree"
    files.makedirs(mount_point)
    _mount(files, nfs_source(url), mount_point)
    try:
        kernel_rel, initrd_rel = _nfs_layout(files, url, mount_point)
        _nfs_copy(files, mount_point, kernel_rel, kernel_path, KERNEL)
        _nfs_copy(files, mount_point, initrd_rel, initrd_path, INITRD)
        return kernel_rel, initrd_rel
    finally:
        files.run(["umount", "--", mount_point], timeout=60)


def _check_nfs(url: str) -> None:
    """The NFS host passes the address rules of fetch.py too (resolved here, on the
    manager; the server then mounts it by name). Unresolvable is refused: unchecked."""
    try:
        fetch.check_url(url, schemes={"nfs"}, base=True)
    except fetch.FetchError as exc:
        raise InstallSourceError(
            _("The install tree at %(url)s is refused: %(error)s") % {"url": url, "error": exc}
        ) from exc


def pvm_boot_files_fetch(
    *,
    vm: VirtualMachine,
    server: Server,
    progress: Callable[[int], None] | None = None,
    check_abort: Callable[[], None] | None = None,
) -> dict:
    """Put the PVM's kernel and initrd on ``server`` (called by the vm.start job before
    the domain is defined). Raises ``InstallSourceError`` with the reason; an HTTP/FTP
    download runs ``check_abort`` at least every second."""
    kernel_path, initrd_path = pvm_boot_paths(vm)
    base = vm_directory(vm)
    stamp_path = f"{base}/{STAMP}"
    url = vm.pvm_boot_url
    with server_files(server) as files:
        stamp = files.read_text(stamp_path)
        stamp = json.loads(stamp) if stamp else None
        if not url:
            if stamp:
                return {**stamp, "fetched": False}
            raise InstallSourceError(
                _("PVM %(vm)s has no network boot path (the URL of its mounted install tree).") % {"vm": vm.name}
            )
        if stamp and stamp.get("url") == url:
            return {**stamp, "fetched": False}
        files.makedirs(base)
        if urlsplit(url).scheme.lower() == "nfs":
            _check_nfs(url)
            kernel_rel, initrd_rel = _fetch_nfs(files, url, base, kernel_path, initrd_path)
        else:
            kernel_rel, initrd_rel = _fetch_url(files, url, kernel_path, initrd_path, progress, check_abort)
        record = {"url": url, "kernel": kernel_rel, "initrd": initrd_rel}
        files.write(stamp_path, [json.dumps(record).encode()])
    return {**record, "fetched": True}
