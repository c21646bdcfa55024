"""PVM kernel and initrd from a mounted install tree (seed 7.1, 7.2): fetched over real
HTTP from a loopback server, written locally and through the real sshd's SFTP, and a
real PVM boot of the tiny guest on this machine's libvirtd."""

import json
import shutil
import socket
from pathlib import Path

import pytest

from ovmweb.inventory.choices import VmStatus
from ovmweb.inventory.services import install_sources, vms
from ovmweb.inventory.services.install_sources import InstallSourceError, pvm_boot_files_fetch
from ovmweb.jobs.choices import JobStatus
from ovmweb.jobs.testing import run_pending_jobs
from ovmweb.tunnels.credentials import encrypt_credentials
from tests import factories as f

from .conftest import GUEST_DIR, http_tree, read_serial_until


@pytest.fixture(autouse=True)
def loopback_install_trees(settings):
    """The trees here are served on loopback, an address imports refuse unless allowed."""
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


def test_fetches_pxeboot_layout_and_skips_when_unchanged(pvm, local_server, install_tree):
    with http_tree(install_tree) as url:
        pvm.pvm_boot_url = url + "/"
        result = pvm_boot_files_fetch(vm=pvm, server=local_server)
        assert result == {
            "url": url + "/",
            "kernel": "images/pxeboot/vmlinuz",
            "initrd": "images/pxeboot/initrd.img",
            "fetched": True,
        }
        d = _vm_dir(pvm)
        assert (d / "vmlinuz").read_bytes() == (GUEST_DIR / "vmlinuz").read_bytes()
        assert (d / "initrd.img").read_bytes() == (GUEST_DIR / "initrd.gz").read_bytes()
        assert not list(d.glob("*.part"))
        assert json.loads((d / "pvm-boot.json").read_text())["url"] == url + "/"
        # Same URL again: nothing is downloaded (the file's mtime stays).
        mtime = (d / "vmlinuz").stat().st_mtime_ns
        assert pvm_boot_files_fetch(vm=pvm, server=local_server)["fetched"] is False
        assert (d / "vmlinuz").stat().st_mtime_ns == mtime


def test_falls_back_to_isolinux_layout(pvm, local_server, tmp_path):
    tree = tmp_path / "tree2"
    (tree / "isolinux").mkdir(parents=True)
    shutil.copy(GUEST_DIR / "vmlinuz", tree / "isolinux" / "vmlinuz")
    (tree / "isolinux" / "initrd.img").write_bytes(b"\x1f\x8binitrd")
    with http_tree(tree) as url:
        pvm.pvm_boot_url = url
        assert pvm_boot_files_fetch(vm=pvm, server=local_server)["kernel"] == "isolinux/vmlinuz"
    assert (_vm_dir(pvm) / "initrd.img").read_bytes() == b"\x1f\x8binitrd"


def test_missing_kernel_names_the_paths_tried(pvm, local_server, tmp_path):
    (tmp_path / "empty").mkdir()
    with http_tree(tmp_path / "empty") as url:
        pvm.pvm_boot_url = url
        with pytest.raises(InstallSourceError) as err:
            pvm_boot_files_fetch(vm=pvm, server=local_server)
    assert "images/pxeboot/vmlinuz" in str(err.value) and "isolinux/vmlinuz" in str(err.value)
    assert not (_vm_dir(pvm) / "pvm-boot.json").exists()


def test_missing_initrd_is_named(pvm, local_server, install_tree):
    (install_tree / "images" / "pxeboot" / "initrd.img").unlink()
    with http_tree(install_tree) as url:
        pvm.pvm_boot_url = url
        with pytest.raises(InstallSourceError, match="no images/pxeboot/initrd.img"):
            pvm_boot_files_fetch(vm=pvm, server=local_server)


def test_a_web_page_is_not_a_kernel(pvm, local_server, tmp_path):
    tree = tmp_path / "html" / "images" / "pxeboot"
    tree.mkdir(parents=True)
    (tree / "vmlinuz").write_text("<html>" + "x" * 2000 + "</html>")
    (tree / "initrd.img").write_text("x")
    with http_tree(tmp_path / "html") as url:
        pvm.pvm_boot_url = url
        with pytest.raises(InstallSourceError, match="not a Linux kernel"):
            pvm_boot_files_fetch(vm=pvm, server=local_server)


def test_unreachable_url_is_a_clear_error(pvm, local_server):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    pvm.pvm_boot_url = f"http://127.0.0.1:{port}/ol6"
    with pytest.raises(InstallSourceError, match="Cannot reach the install tree"):
        pvm_boot_files_fetch(vm=pvm, server=local_server)


def test_no_url_and_nothing_fetched_before(pvm, local_server):
    pvm.pvm_boot_url = ""
    with pytest.raises(InstallSourceError, match="no network boot path"):
        pvm_boot_files_fetch(vm=pvm, server=local_server)


def test_nfs_is_mounted_by_the_server_and_a_failed_mount_is_reported(pvm, local_server):
    # This machine's kernel has no NFS client: the server's own mount fails, clearly.
    assert install_sources.nfs_source("nfs://filer.example.com/export/ol6") == "filer.example.com:/export/ol6"
    pvm.pvm_boot_url = "nfs://127.0.0.1/export/ol6"
    with pytest.raises(InstallSourceError, match="cannot mount the install tree 127.0.0.1:/export/ol6"):
        pvm_boot_files_fetch(vm=pvm, server=local_server)


def test_ssh_server_gets_the_files_through_sftp(pvm, install_tree, ssh_access, settings):
    settings.OVMWEB_HYPERVISOR_URI = ""
    server = f.ServerFactory(
        transport="ssh",
        hostname="127.0.0.1",
        ssh_port=ssh_access["port"],
        ssh_user="root",
        host_key_fingerprint=ssh_access["fingerprint"],
        credentials_encrypted=encrypt_credentials({"private_key": ssh_access["private_key"]}),
    )
    with http_tree(install_tree) as url:
        pvm.pvm_boot_url = url
        assert pvm_boot_files_fetch(vm=pvm, server=server)["fetched"] is True
    # The sshd is this machine, so the SFTP-written files are visible here.
    assert (_vm_dir(pvm) / "vmlinuz").read_bytes() == (GUEST_DIR / "vmlinuz").read_bytes()
    assert (_vm_dir(pvm) / "initrd.img").stat().st_size == (GUEST_DIR / "initrd.gz").stat().st_size


def test_ssh_server_with_a_wrong_host_key_gets_nothing(pvm, install_tree, ssh_access, settings):
    settings.OVMWEB_HYPERVISOR_URI = ""
    server = f.ServerFactory(
        transport="ssh",
        hostname="127.0.0.1",
        ssh_port=ssh_access["port"],
        host_key_fingerprint="SHA256:" + "B" * 43,
        credentials_encrypted=encrypt_credentials({"private_key": ssh_access["private_key"]}),
    )
    pvm.pvm_boot_url = "http://127.0.0.1:9/unused"
    from ovmweb.errors import HostKeyMismatch

    with pytest.raises(HostKeyMismatch):
        pvm_boot_files_fetch(vm=pvm, server=server)
    assert not _vm_dir(pvm).exists()


@pytest.mark.integration
def test_pvm_boots_the_tiny_guest_from_a_mounted_install_tree(real_estate, install_tree):
    """A PVM created with the URL of an install tree starts for real: the start job fetches
    the kernel and initrd into the repository and QEMU boots them directly (no BIOS)."""
    e = real_estate
    with http_tree(install_tree) as url:
        vm = vms.vm_create(
            user=e["user"],
            name="pvm-tiny",
            server_pool=e["pool"],
            repository=e["repo"],
            domain_type="PVM",
            os_type="OL6",
            memory_mib=256,
            max_memory_mib=256,
            source={"kind": "pvm_url", "url": url},
        )
        job = vms.vm_action(vm=vm, action="start", user=e["user"])
        run_pending_jobs()
    job.refresh_from_db()
    vm.refresh_from_db()
    assert job.status == JobStatus.SUCCESS, job.error
    assert vm.status == VmStatus.RUNNING
    from ovmweb.hypervisor.connections import driver_for

    xml = driver_for(e["server"]).domain_xml(str(vm.uuid))
    assert f"<kernel>{_vm_dir(vm)}/vmlinuz</kernel>" in xml and f"<initrd>{_vm_dir(vm)}/initrd.img</initrd>" in xml
    banner = read_serial_until(vm.serial_port, b"ovmweb tiny guest")
    assert b"ovmweb tiny guest" in banner
    kill = vms.vm_action(vm=vm, action="kill", user=e["user"])
    run_pending_jobs()
    kill.refresh_from_db()
    vm.refresh_from_db()
    assert kill.status == JobStatus.SUCCESS and vm.status == VmStatus.STOPPED and vm.serial_port is None


@pytest.mark.integration
def test_pvm_start_with_an_unreachable_tree_fails_and_releases_ports(real_estate):
    e = real_estate
    vm = vms.vm_create(
        user=e["user"],
        name="pvm-nowhere",
        server_pool=e["pool"],
        repository=e["repo"],
        domain_type="PVM",
        os_type="OL6",
        memory_mib=256,
        max_memory_mib=256,
        source={"kind": "pvm_url", "url": "http://127.0.0.1:9/ol6"},
    )
    job = vms.vm_action(vm=vm, action="start", user=e["user"])
    run_pending_jobs()
    job.refresh_from_db()
    vm.refresh_from_db()
    assert job.status == JobStatus.FAILURE and "Cannot reach the install tree" in job.error
    assert vm.status == VmStatus.STOPPED and vm.vnc_port is None and vm.serial_port is None
