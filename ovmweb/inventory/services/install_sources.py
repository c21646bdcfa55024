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
import shlex
from collections.abc import Callable, Iterator
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


class _Head:
    """Streams a response in chunks and keeps its first bytes for a format check."""

    def __init__(self, response, progress: Callable[[int], None] | None):
        self.response, self.progress, self.head, self.done = response, progress, b"", 0

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.response.read(_CHUNK):
            if len(self.head) < 1024:
                self.head += chunk[: 1024 - len(self.head)]
            self.done += len(chunk)
            if self.progress:
                self.progress(self.done)
            yield chunk


def _check_kernel(head: bytes, url: str) -> None:
    if head[_BZIMAGE_MAGIC_OFFSET : _BZIMAGE_MAGIC_OFFSET + 4] != _BZIMAGE_MAGIC:
        raise InstallSourceError(_("%(url)s is not a Linux kernel (no bzImage header).") % {"url": url})


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
            stream = _Head(response, progress)
            files.write(kernel_path, stream)
        _check_kernel(stream.head, kernel_url)
        response = _open(initrd_url, check_abort)
        if response is None:
            raise InstallSourceError(
                _("The install tree at %(url)s has %(kernel)s but no %(initrd)s.")
                % {"url": url, "kernel": kernel_rel, "initrd": initrd_rel}
            )
        with response:
            files.write(initrd_path, _Head(response, progress))
        return kernel_rel, initrd_rel
    raise InstallSourceError(
        _(
            "No kernel in the install tree at %(url)s (tried %(tried)s). Give the URL of the root of a mounted "
            "install ISO."
        )
        % {"url": url, "tried": ", ".join(tried)}
    )


def nfs_source(url: str) -> str:
    """``nfs://host/export/dir`` -> ``host:/export/dir`` (the form ``mount -t nfs`` takes)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{unquote(parts.path) or '/'}"


def _fetch_nfs(files: ServerFiles, url: str, base: str, kernel_path: str, initrd_path: str) -> tuple[str, str]:
    mount_point = f"{base}/.install-tree"
    files.makedirs(mount_point)
    source = nfs_source(url)
    code, _out, err = files.run(["mount", "-t", "nfs", "-o", "ro,nolock,soft", source, mount_point], timeout=90)
    if code != 0:
        raise InstallSourceError(
            _("The server cannot mount the install tree %(src)s: %(error)s")
            % {"src": source, "error": (err or _out).strip() or f"exit status {code}"}
        )
    try:
        tried = []
        for kernel_rel, initrd_rel in PVM_BOOT_LAYOUTS:
            if files.run(["test", "-f", f"{mount_point}/{kernel_rel}"])[0] != 0:
                tried.append(kernel_rel)
                continue
            if files.run(["test", "-f", f"{mount_point}/{initrd_rel}"])[0] != 0:
                raise InstallSourceError(
                    _("The install tree at %(url)s has %(kernel)s but no %(initrd)s.")
                    % {"url": url, "kernel": kernel_rel, "initrd": initrd_rel}
                )
            for rel, target in ((kernel_rel, kernel_path), (initrd_rel, initrd_path)):
                script = (
                    f"cp -f {shlex.quote(f'{mount_point}/{rel}')} {shlex.quote(target + '.part')} && "
                    f"mv -f {shlex.quote(target + '.part')} {shlex.quote(target)}"
                )
                code, _out, err = files.run(["sh", "-c", script], timeout=300)
                if code != 0:
                    raise InstallSourceError(
                        _("Copying %(file)s from %(src)s failed: %(error)s")
                        % {"file": rel, "src": source, "error": err.strip()}
                    )
            return kernel_rel, initrd_rel
        raise InstallSourceError(
            _("No kernel in the install tree at %(url)s (tried %(tried)s).") % {"url": url, "tried": ", ".join(tried)}
        )
    finally:
        files.run(["umount", mount_point], timeout=60)


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
