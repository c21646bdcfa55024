"""A PVM's install tree is from outside: what it hands over as kernel and initrd is
checked before it is kept (a bzImage header, an initrd's compression or cpio magic, size
caps), and an NFS tree can neither lead the copy out of the mount (a linked file or
directory pointing at the server's /etc/shadow), nor hand over a FIFO or device, nor be
mounted with devices, set-uid or exec allowed. The NFS export is played by a directory
that the fake ``mount`` copies into the mount point (this kernel has no NFS client);
everything else runs for real on this machine."""

import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from ovmweb.inventory.services import install_sources
from ovmweb.inventory.services.install_sources import InstallSourceError, pvm_boot_files_fetch
from ovmweb.inventory.services.server_files import LocalFiles
from tests import factories as f

from .conftest import GUEST_DIR, http_tree

GZIP_SECRET = b"\x1f\x8b" + b"the server's secret" * 10
NFS_URL = "nfs://127.0.0.1/export/ol6"


@pytest.fixture(autouse=True)
def loopback_install_trees(settings):
    settings.OVMWEB_IMPORT_ALLOWED_NETWORKS = ["127.0.0.0/8"]


@pytest.fixture
def pvm(db, tmp_path):
    repo = f.RepositoryFactory(path=str(tmp_path / "repo"))
    return f.VirtualMachineFactory(domain_type="PVM", os_type="OL6", repository=repo)


@pytest.fixture
def local_server(db):
    return f.ServerFactory(transport="local", hostname="localhost")


def _vm_dir(vm) -> Path:
    return Path(vm.repository.path) / "VirtualMachines" / str(vm.uuid)


class FakeNfs(LocalFiles):
    """This machine's files, with ``mount`` copying ``export`` (links and FIFOs kept as they
    are) into the mount point and ``umount`` emptying it again."""

    def __init__(self, export: Path):
        self.export, self.calls = export, []

    def run(self, argv, timeout=60):
        if argv[0] == "mount":
            self.calls.append(argv)
            subprocess.run(["cp", "-a", f"{self.export}/.", argv[-1]], check=True)
            return 0, "", ""
        if argv[0] == "umount":
            self.calls.append(argv)
            shutil.rmtree(argv[-1])
            os.mkdir(argv[-1])
            return 0, "", ""
        return super().run(argv, timeout)


@pytest.fixture
def nfs(monkeypatch, tmp_path):
    """The export (the tiny guest's tree) and the fake server's files."""
    export = tmp_path / "export"
    (export / "images" / "pxeboot").mkdir(parents=True)
    shutil.copy(GUEST_DIR / "vmlinuz", export / "images" / "pxeboot" / "vmlinuz")
    shutil.copy(GUEST_DIR / "initrd.gz", export / "images" / "pxeboot" / "initrd.img")
    files = FakeNfs(export)

    @contextmanager
    def server_files(server):
        yield files

    monkeypatch.setattr(install_sources, "server_files", server_files)
    return files


def _fetch_nfs(pvm, server):
    pvm.pvm_boot_url = NFS_URL
    return pvm_boot_files_fetch(vm=pvm, server=server)


def _secret(tmp_path: Path) -> Path:
    """A file of the server outside the export, shaped like an initrd so that only the
    link rule can refuse it."""
    secret = tmp_path / "etc-shadow"
    secret.write_bytes(GZIP_SECRET)
    return secret


# ---------------------------------------------------------------- NFS


def test_nfs_is_mounted_read_only_nosuid_nodev_noexec_and_options_end_with_dashdash(pvm, local_server, nfs):
    assert _fetch_nfs(pvm, local_server)["kernel"] == "images/pxeboot/vmlinuz"
    mount, umount = nfs.calls
    options = mount[mount.index("-o") + 1].split(",")
    assert {"ro", "nosuid", "nodev", "noexec"} <= set(options)
    assert mount[-3:-1] == ["--", "127.0.0.1:/export/ol6"] and umount[:2] == ["umount", "--"]
    assert (_vm_dir(pvm) / "vmlinuz").read_bytes() == (GUEST_DIR / "vmlinuz").read_bytes()
    assert (_vm_dir(pvm) / "initrd.img").read_bytes() == (GUEST_DIR / "initrd.gz").read_bytes()


def test_nfs_linked_initrd_is_not_followed(pvm, local_server, nfs, tmp_path):
    initrd = nfs.export / "images" / "pxeboot" / "initrd.img"
    initrd.unlink()
    initrd.symlink_to(_secret(tmp_path))
    with pytest.raises(InstallSourceError, match="initrd.img of the install tree was refused: it is a symbolic link"):
        _fetch_nfs(pvm, local_server)
    assert not (_vm_dir(pvm) / "initrd.img").exists()
    assert not list(_vm_dir(pvm).glob("*.part"))


def test_nfs_linked_directory_leading_out_of_the_mount_is_refused(pvm, local_server, nfs, tmp_path):
    outside = tmp_path / "outside" / "pxeboot"
    outside.mkdir(parents=True)
    shutil.copy(GUEST_DIR / "vmlinuz", outside / "vmlinuz")
    shutil.copy(_secret(tmp_path), outside / "initrd.img")
    shutil.rmtree(nfs.export / "images")
    (nfs.export / "images").symlink_to(outside.parent)
    with pytest.raises(InstallSourceError, match="leads out of the install tree"):
        _fetch_nfs(pvm, local_server)
    assert not (_vm_dir(pvm) / "vmlinuz").exists() and not (_vm_dir(pvm) / "initrd.img").exists()


def test_nfs_fifo_is_not_a_kernel(pvm, local_server, nfs):
    kernel = nfs.export / "images" / "pxeboot" / "vmlinuz"
    kernel.unlink()
    os.mkfifo(kernel)
    with pytest.raises(InstallSourceError, match="vmlinuz of the install tree was refused: it is not a regular file"):
        _fetch_nfs(pvm, local_server)


def test_nfs_kernel_and_initrd_are_checked_before_they_are_kept(pvm, local_server, nfs):
    (nfs.export / "images" / "pxeboot" / "initrd.img").write_text("#!/bin/sh\nnot an initrd\n")
    with pytest.raises(InstallSourceError, match="is not an initrd"):
        _fetch_nfs(pvm, local_server)
    assert not (_vm_dir(pvm) / "initrd.img").exists() and not list(_vm_dir(pvm).glob("*.part"))
    (nfs.export / "images" / "pxeboot" / "vmlinuz").write_bytes(b"\x7fELF" + b"\0" * 4096)
    with pytest.raises(InstallSourceError, match="is not a Linux kernel"):
        _fetch_nfs(pvm, local_server)


def test_nfs_copy_stops_at_the_size_cap(pvm, local_server, nfs, monkeypatch):
    small = install_sources.BootFile("initrd", 1000, 2, install_sources._is_initrd)
    monkeypatch.setattr(install_sources, "INITRD", small)
    with pytest.raises(InstallSourceError, match="larger than .* bytes, the cap for a Linux initrd"):
        _fetch_nfs(pvm, local_server)
    assert not (_vm_dir(pvm) / "initrd.img").exists()


@pytest.mark.parametrize(
    "url", ["nfs://-oexec/export", "nfs://host/export,exec", "nfs://host/a%0Ab", "nfs://host/%00", "nfs:///export"]
)
def test_nfs_host_or_path_that_mount_could_take_for_an_option_is_refused(url):
    with pytest.raises(InstallSourceError, match="not a usable nfs://host/path URL"):
        install_sources.nfs_source(url)


def test_a_dash_host_never_reaches_mount(pvm, local_server, nfs, monkeypatch):
    monkeypatch.setattr(install_sources, "_check_nfs", lambda url: None)  # the address rules are fetch.py's test
    pvm.pvm_boot_url = "nfs://-ohelper=x/export"
    with pytest.raises(InstallSourceError):
        pvm_boot_files_fetch(vm=pvm, server=local_server)
    assert nfs.calls == []


# ---------------------------------------------------------------- HTTP


def _tree(tmp_path: Path, kernel: bytes, initrd: bytes) -> Path:
    tree = tmp_path / "web"
    (tree / "images" / "pxeboot").mkdir(parents=True)
    (tree / "images" / "pxeboot" / "vmlinuz").write_bytes(kernel)
    (tree / "images" / "pxeboot" / "initrd.img").write_bytes(initrd)
    return tree


def test_http_kernel_refused_before_it_reaches_its_name(pvm, local_server, tmp_path):
    tree = _tree(tmp_path, b"<html>" + b"x" * 5000, (GUEST_DIR / "initrd.gz").read_bytes())
    with http_tree(tree) as url:
        pvm.pvm_boot_url = url
        with pytest.raises(InstallSourceError, match="not a Linux kernel"):
            pvm_boot_files_fetch(vm=pvm, server=local_server)
    assert not (_vm_dir(pvm) / "vmlinuz").exists() and not list(_vm_dir(pvm).glob("*.part"))


@pytest.mark.parametrize("initrd", [b"", b"MZ" + b"\0" * 100, b"root:$6$salt$hash:19000:0:99999:7:::\n"])
def test_http_initrd_must_be_an_initrd(pvm, local_server, tmp_path, initrd):
    tree = _tree(tmp_path, (GUEST_DIR / "vmlinuz").read_bytes(), initrd)
    with http_tree(tree) as url:
        pvm.pvm_boot_url = url
        with pytest.raises(InstallSourceError, match="is not an initrd"):
            pvm_boot_files_fetch(vm=pvm, server=local_server)
    assert not (_vm_dir(pvm) / "initrd.img").exists()


def test_http_initrd_over_the_cap_is_refused(pvm, local_server, tmp_path, monkeypatch):
    monkeypatch.setattr(
        install_sources, "INITRD", install_sources.BootFile("initrd", 4096, 2, install_sources._is_initrd)
    )
    tree = _tree(tmp_path, (GUEST_DIR / "vmlinuz").read_bytes(), b"\x1f\x8b" + b"\0" * 10_000)
    with http_tree(tree) as url:
        pvm.pvm_boot_url = url
        with pytest.raises(InstallSourceError, match="larger than .* bytes, the cap for a Linux initrd"):
            pvm_boot_files_fetch(vm=pvm, server=local_server)
    assert not (_vm_dir(pvm) / "initrd.img").exists()
