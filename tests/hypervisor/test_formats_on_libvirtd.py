"""Image formats on the real libvirtd and qemu-img: a raw disk whose guest wrote a qcow2 header
(naming a host file as its backing file) is neither followed by a thin clone nor copied as qcow2.
Checked on the files with ``qemu-img info -f`` (which itself probes nothing)."""

import json
import subprocess
import uuid

import pytest

from ovmweb.errors import OperationFailed
from ovmweb.hypervisor.base import PoolSpec
from ovmweb.hypervisor.libvirt import LibvirtDriver

pytestmark = pytest.mark.integration

MIB = 1 << 20


def qemu_img_info(path, fmt: str) -> dict:
    out = subprocess.run(
        ["qemu-img", "info", "-U", "-f", fmt, "--output=json", str(path)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)


@pytest.fixture
def repo(tmp_path):
    """A directory pool on qemu:///system over a fresh directory."""
    driver = LibvirtDriver("qemu:///system")
    name = f"ovmweb-fmt-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "VirtualDisks"
    path.mkdir()
    driver.pool_define(PoolSpec(name=name, path=str(path)), build=False)
    try:
        yield driver, name, path
    finally:
        for vol in driver.pool_refresh(name).volumes:
            driver.volume_delete(name, vol.name)
        driver.pool_undefine(name)
        driver.close()


def hostile_raw_disk(driver, pool, path, tmp_path) -> None:
    """A raw disk whose first bytes are a qcow2 header backed by a host file."""
    secret = tmp_path / "host-secret"
    secret.write_bytes(b"not for guests" * 1000)
    driver.volume_create(pool, "guest.img", 4 * MIB, format="raw")
    header = tmp_path / "header.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(secret), "-F", "raw", str(header), str(4 * MIB)],
        check=True,
    )
    with open(path / "guest.img", "r+b") as fh:
        fh.write(header.read_bytes())
    assert {v.name: v.format for v in driver.pool_refresh(pool).volumes}["guest.img"] == "qcow2"  # libvirt's probe


def test_a_thin_clone_of_a_raw_disk_backs_onto_it_as_raw(repo, tmp_path):
    driver, pool, path = repo
    hostile_raw_disk(driver, pool, path, tmp_path)
    driver.volume_clone(pool, "guest.img", pool, "thin.qcow2", clone_type="thin", source_format="raw")
    info = qemu_img_info(path / "thin.qcow2", "qcow2")
    assert info["format"] == "qcow2"
    assert info["backing-filename"] == str(path / "guest.img")
    assert info["backing-filename-format"] == "raw"


def test_a_copy_of_a_raw_disk_with_a_qcow2_header_is_refused(repo, tmp_path):
    driver, pool, path = repo
    hostile_raw_disk(driver, pool, path, tmp_path)
    with pytest.raises(OperationFailed, match="recorded as raw but its header reads as qcow2"):
        driver.volume_clone(pool, "guest.img", pool, "copy.qcow2", clone_type="sparse", source_format="raw")
    assert not (path / "copy.qcow2").exists()


def test_volumes_and_copies_are_written_in_the_format_asked(repo):
    driver, pool, path = repo
    driver.volume_create(pool, "a.qcow2", 4 * MIB, format="qcow2")
    driver.volume_create(pool, "b.img", 4 * MIB, format="raw")
    assert qemu_img_info(path / "a.qcow2", "qcow2")["virtual-size"] == 4 * MIB
    driver.volume_clone(pool, "b.img", pool, "c.qcow2", clone_type="non_sparse", source_format="raw")
    info = qemu_img_info(path / "c.qcow2", "qcow2")
    assert info["virtual-size"] == 4 * MIB and "backing-filename" not in info
    thin = qemu_img_info(
        path / driver.volume_clone(pool, "a.qcow2", pool, "t.qcow2", clone_type="thin", source_format="qcow2").name,
        "qcow2",
    )
    assert thin["backing-filename-format"] == "qcow2"
