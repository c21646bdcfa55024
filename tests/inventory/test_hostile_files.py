"""Files from outside are hostile until proven otherwise: crafted disk images (a qcow2
whose backing file is /etc/shadow, a qcow2 with an external data file, a VMDK descriptor
whose extent is /dev/sda, a qcow2 declared raw), OVF descriptors (entity bombs, absurd
units) and OVA archives (links, devices, sparse members, too many or too large members)
are refused with the reason, and nothing of them is left in a repository or the staging
directory. The images are made with the real qemu-img; the imports run as jobs into a
real repository on this machine's libvirtd."""

import io
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from ovmweb.inventory.models import IsoFile, VirtualAppliance, VirtualDisk
from ovmweb.inventory.services import appliances, images, storage
from ovmweb.inventory.services.ovf import ApplianceError, parse_ovf
from ovmweb.jobs.choices import JobStatus
from ovmweb.jobs.testing import run_pending_jobs

from .conftest import GUEST_DIR
from .test_appliances import make_ova, ovf_xml, qcow2

ISO9660_AT = 0x8001


def evil_backing(path: Path, backing: str = "/etc/shadow") -> Path:
    """A qcow2 whose backing file is a host file: its unwritten clusters read that file."""
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", backing, "-F", "raw", str(path), "64M"], check=True
    )
    return path


def evil_data_file(path: Path, data_file: str = "/dev/sda") -> Path:
    """A qcow2 whose guest data lives in an external file (``-u``: it need not exist here)."""
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-o", f"data_file={data_file}", str(path), "64M"], check=True
    )
    return path


def evil_vmdk(path: Path, extent: str = "/dev/sda") -> Path:
    """A VMDK text descriptor (written by hand) whose one flat extent is a host block device."""
    path.write_text(
        "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n"
        'createType="monolithicFlat"\n\n# Extent description\n'
        f'RW 131072 FLAT "{extent}" 0\n\n# The Disk Data Base\nddb.adapterType = "ide"\n'
    )
    return path


def as_iso(path: Path) -> Path:
    """Plant the ISO 9660 signature where an ISO has it, inside the image's header cluster."""
    with open(path, "r+b") as fh:
        fh.seek(ISO9660_AT)
        fh.write(b"CD001")
    return path


def _listing(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")} if directory.exists() else set()


# ---------------------------------------------------------------- image inspection


@pytest.mark.parametrize(
    "make,fmt,reason",
    [
        (evil_backing, "qcow2", "has a backing file"),
        (evil_data_file, "qcow2", "has an external data file"),
        (evil_vmdk, "vmdk", "VMDK descriptor naming extent files (/dev/sda)"),
        (lambda p: qcow2(p), "raw", "declared raw but is a qcow2 image"),
        (lambda p: evil_backing(p), "vmdk", "declared vmdk but is not a vmdk image"),
    ],
)
def test_image_check_refuses_references_out_of_the_image(tmp_path, make, fmt, reason):
    image = make(tmp_path / "evil.img")
    with pytest.raises(images.UnsafeImage, match=re.escape(reason)):
        images.image_check(image, fmt)


def test_the_header_checks_alone_catch_them_before_qemu_img_runs(tmp_path, monkeypatch):
    """qemu-img never opens a descriptor's /dev/sda: the first bytes refuse it before."""
    ran = []
    monkeypatch.setattr(images, "_local_run", lambda argv, timeout: ran.append(argv) or (0, "{}", ""))
    for make, fmt in ((evil_backing, "qcow2"), (evil_data_file, "qcow2"), (evil_vmdk, "vmdk")):
        with pytest.raises(images.UnsafeImage):
            images.image_check(make(tmp_path / f"x.{fmt}"), fmt)
    assert ran == []


def test_qemu_img_report_is_checked_too(tmp_path):
    """What qemu-img reports is refused even if the header looked clean (a sparse VMDK
    names its parent only in its embedded descriptor, which qemu-img reads)."""
    base = tmp_path / "base.vmdk"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", str(base), "16M"], check=True)
    child = tmp_path / "child.vmdk"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", "-b", str(base), "-F", "vmdk", str(child)], check=True)
    with pytest.raises(images.UnsafeImage, match="backing file|parent"):
        images.image_check(child, "vmdk")
    info = {
        "format": "vmdk",
        "filename": "/r/a.vmdk",
        "format-specific": {"data": {"extents": [{"filename": "/r/a.vmdk"}, {"filename": "/dev/sda"}]}},
    }
    with pytest.raises(images.UnsafeImage, match="extent files \\(/dev/sda\\)"):
        images.check_info("a.vmdk", info, "vmdk")


def test_qemu_img_always_gets_the_format_and_force_share(tmp_path, monkeypatch):
    seen = []
    real = images._local_run
    monkeypatch.setattr(images, "_local_run", lambda argv, timeout: seen.append((argv, timeout)) or real(argv, timeout))
    clean = qcow2(tmp_path / "clean.qcow2")
    assert images.image_check(clean, "qcow2")["virtual-size"] == 64 << 20
    ((argv, timeout),) = seen
    assert argv[:7] == ["qemu-img", "info", "--output=json", "-f", "qcow2", "-U", "--"] and argv[7] == str(clean)
    assert timeout == images.QEMU_IMG_TIMEOUT


def test_clean_images_pass(tmp_path):
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", str(tmp_path / "ok.vmdk"), "16M"], check=True)
    assert images.image_check(tmp_path / "ok.vmdk", "vmdk")["format"] == "vmdk"
    (tmp_path / "ok.raw").write_bytes(b"\0" * 65536)
    assert images.image_check(tmp_path / "ok.raw", "raw")["format"] == "raw"
    assert images.image_check(GUEST_DIR / "tiny.iso", "raw")["format"] == "raw"


def test_a_link_is_not_inspected_through(tmp_path):
    (tmp_path / "link.qcow2").symlink_to(qcow2(tmp_path / "real.qcow2"))
    with pytest.raises(images.UnsafeImage, match="not a regular file"):
        images.image_check(tmp_path / "link.qcow2", "qcow2")


# ---------------------------------------------------------------- OVF descriptor

BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE Envelope [<!ENTITY a "aaaaaaaaaa">'
    + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
    + ']><Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"><Name>&j;</Name></Envelope>'
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?><!DOCTYPE Envelope [<!ENTITY x SYSTEM "file:///etc/shadow">]>'
    '<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"><Name>&x;</Name></Envelope>'
)


@pytest.mark.parametrize("text", [BILLION_LAUGHS, EXTERNAL_ENTITY])
def test_entity_ovf_is_refused(text):
    with pytest.raises(ApplianceError, match="DTD or entities"):
        parse_ovf(text)


@pytest.mark.timeout(30)  # a guard: the old grammar computed 2**99999999999 here
@pytest.mark.parametrize("units", ["byte * 2^99999999999", "byte * 10^999", "byte * 2^61", "byte*99999^2"])
def test_absurd_units_are_refused_at_once(units):
    text = ovf_xml().replace("byte * 2^30", units)
    with pytest.raises(ApplianceError, match="allocation unit|out of any real range"):
        parse_ovf(text)


def test_sizes_are_bounded():
    assert parse_ovf(ovf_xml().replace("byte * 2^30", "byte * 2^40")).vms[0].disks[0].capacity_bytes == 1 << 40
    with pytest.raises(ApplianceError, match="out of any real range"):
        parse_ovf(ovf_xml(disks=(("d1", "disk1.qcow2", 2**31),)))  # 2^31 GiB = 2^61 bytes
    with pytest.raises(ApplianceError, match="a number is expected"):
        parse_ovf(ovf_xml(disks=(("d1", "disk1.qcow2", "9" * 5000),)))
    too_many_cpus = ovf_xml(systems=(("web", 10**6, 1024, "Linux", ["d1"]),))
    with pytest.raises(ApplianceError, match="out of any real range"):
        parse_ovf(too_many_cpus)


# ---------------------------------------------------------------- OVA archive


def _ova_with(path: Path, *members: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w") as tar:
        data = ovf_xml().encode()
        info = tarfile.TarInfo("appliance.ovf")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for member in members:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, link
    return info


@pytest.mark.parametrize(
    "member,reason",
    [
        (_member("disk1.qcow2", tarfile.SYMTYPE, link="/etc/shadow"), "is a symbolic link"),
        (_member("disk1.qcow2", tarfile.LNKTYPE, link="/etc/shadow"), "is a hard link"),
        (_member("disk1.qcow2", tarfile.BLKTYPE), "is a device"),
        (_member("disk1.qcow2", tarfile.CHRTYPE), "is a device"),
        (_member("sub", tarfile.DIRTYPE), "is a directory"),
        (_member("../escape", size=1), "plain file names"),
        (_member("/etc/cron.d/evil", size=1), "plain file names"),
        (_member("a/../../b", size=1), "plain file names"),
    ],
)
def test_ova_members_other_than_plain_files_are_refused(tmp_path, member, reason):
    (tmp_path / "out").mkdir()
    with pytest.raises(ApplianceError, match=reason):
        appliances.unpack_ova(_ova_with(tmp_path / "x.ova", member), tmp_path / "out")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "out" / "disk1.qcow2").exists()


def test_a_gnu_sparse_member_is_refused_before_it_expands(tmp_path):
    big = tmp_path / "src" / "disk1.raw"
    big.parent.mkdir()
    with open(big, "wb") as fh:
        fh.truncate(256 << 20)  # all hole: a few bytes in the archive, 256 MiB extracted
    (tmp_path / "src" / "appliance.ovf").write_text(ovf_xml(disks=(("d1", "disk1.raw", 1),)))
    ova = tmp_path / "sparse.ova"
    subprocess.run(
        ["tar", "--sparse", "--format=gnu", "-C", str(tmp_path / "src"), "-cf", str(ova), "appliance.ovf", "disk1.raw"],
        check=True,
    )
    assert ova.stat().st_size < 1 << 20
    (tmp_path / "out").mkdir()
    with pytest.raises(ApplianceError, match="is a sparse file"):
        appliances.unpack_ova(ova, tmp_path / "out")
    assert not (tmp_path / "out" / "disk1.raw").exists()


def test_ova_member_count_and_size_are_capped(tmp_path, settings):
    settings.OVMWEB_OVA_MAX_MEMBERS, settings.OVMWEB_OVA_MAX_BYTES = 3, 10_000
    (tmp_path / "out").mkdir()
    many = _ova_with(tmp_path / "many.ova", *(_member(f"f{i}", size=1) for i in range(5)))
    with pytest.raises(ApplianceError, match="more than 3 files"):
        appliances.unpack_ova(many, tmp_path / "out")
    (tmp_path / "out2").mkdir()
    large = _ova_with(tmp_path / "large.ova", _member("disk1.qcow2", size=20_000))
    with pytest.raises(ApplianceError, match="more than 10000 bytes"):
        appliances.unpack_ova(large, tmp_path / "out2")
    # Refused on the header: nothing of the large member was written.
    assert not (tmp_path / "out2" / "disk1.qcow2").exists()


def test_a_duplicate_member_does_not_overwrite(tmp_path):
    (tmp_path / "out").mkdir()
    ova = _ova_with(tmp_path / "dup.ova", _member("appliance.ovf", size=3))
    with pytest.raises(ApplianceError, match="twice"):
        appliances.unpack_ova(ova, tmp_path / "out")


def test_an_upload_over_the_cap_is_refused_and_not_kept(db, user, repo, settings):
    settings.OVMWEB_OVA_MAX_BYTES = 1000
    staging = appliances.staging_dir()
    before = _listing(staging)
    with pytest.raises(ValidationError, match="larger than 1000 bytes"):
        appliances.appliance_import(user=user, repository=repo, fileobj=io.BytesIO(b"x" * 5000), filename="big.ova")
    assert _listing(staging) == before


# ---------------------------------------------------------------- imports into a real repository


def _run(job):
    run_pending_jobs()
    job.refresh_from_db()
    return job


def _declared_raw(ovf: str) -> str:
    return ovf.replace("ovf:capacityAllocationUnits", 'ovf:format="raw" ovf:capacityAllocationUnits')


@pytest.mark.integration
@pytest.mark.parametrize(
    "make,descriptor,reason",
    [
        (evil_backing, ovf_xml, "disk1.qcow2 was refused: it has a backing file"),
        (evil_data_file, ovf_xml, "disk1.qcow2 was refused: it has an external data file"),
        (evil_vmdk, ovf_xml, "disk1.qcow2 was refused: it is a VMDK descriptor naming extent files (/dev/sda)"),
        (qcow2, lambda: _declared_raw(ovf_xml()), "disk1.qcow2 was refused: it is declared raw but is a qcow2 image"),
    ],
)
def test_hostile_ova_import_fails_and_leaves_nothing(real_estate, tmp_path, make, descriptor, reason):
    e = real_estate
    disk = make(tmp_path / "disk1.img")
    ova = make_ova(tmp_path / "evil.ova", descriptor(), {"disk1.qcow2": disk})
    staging = appliances.staging_dir()
    before = _listing(staging)
    with open(ova, "rb") as fh:
        job = _run(appliances.appliance_import(user=e["user"], repository=e["repo"], fileobj=fh, filename="evil.ova"))
    assert job.status == JobStatus.FAILURE and reason in job.error, job.error
    assert not VirtualAppliance.objects.exists() and not VirtualDisk.objects.exists()
    assert _listing(Path(e["repo"].path) / "Assemblies") == set()
    assert _listing(staging) == before


@pytest.mark.integration
def test_hostile_image_posing_as_an_iso_is_refused(real_estate, tmp_path):
    e = real_estate
    fake = as_iso(evil_backing(tmp_path / "fake.iso"))
    assert storage.is_iso9660(fake)  # it passes the old signature check
    staging = appliances.staging_dir()
    before = _listing(staging)
    with open(fake, "rb") as fh:
        job = storage.iso_upload(repository=e["repo"], user=e["user"], name="fake.iso", fileobj=fh, size=0)
    job = _run(job)
    assert job.status == JobStatus.FAILURE, job.error
    assert "fake.iso was refused: it is declared raw but is a qcow2 image" in job.error
    assert not IsoFile.objects.exists()
    assert _listing(Path(e["repo"].path) / "ISOs") == set()
    assert _listing(staging) == before


@pytest.mark.integration
def test_hostile_files_found_in_a_repository_are_not_recorded(real_estate, tmp_path):
    """A file dropped into the repository's share is found by a refresh: the clean ones
    become records, the hostile ones stay unrecorded with a warning naming the reason."""
    from ovmweb.inventory.services import repositories
    from ovmweb.jobs.models import Event

    e = real_estate
    root = Path(e["repo"].path)
    evil_backing(root / "VirtualDisks" / "shadow.qcow2")
    evil_data_file(root / "VirtualDisks" / "sda.qcow2")
    qcow2(root / "VirtualDisks" / "clean.qcow2")
    as_iso(evil_backing(root / "ISOs" / "fake.iso"))
    job = _run(repositories.repository_refresh(repository=e["repo"], user=e["user"]))
    assert job.status == JobStatus.SUCCESS, job.error
    assert list(VirtualDisk.objects.values_list("volume", flat=True)) == ["clean.qcow2"]
    assert not IsoFile.objects.filter(name="fake.iso").exists()
    warnings = set(Event.objects.filter(type="repository.file_refused").values_list("text", flat=True))
    assert warnings == {
        "shadow.qcow2 was refused: it has a backing file.",
        "sda.qcow2 was refused: it has an external data file.",
        "fake.iso was refused: it is declared raw but is a qcow2 image.",
    }


def test_remote_inspection_through_the_servers_ssh(db, tmp_path, ssh_access, settings):
    """The same checks on a file of an SSH server (the loopback sshd: this machine's files)."""
    from ovmweb.inventory.services.server_files import server_files
    from ovmweb.tunnels.credentials import encrypt_credentials
    from tests import factories as f

    settings.OVMWEB_HYPERVISOR_URI = ""
    server = f.ServerFactory(
        transport="ssh",
        hostname="127.0.0.1",
        ssh_port=ssh_access["port"],
        ssh_user="root",
        host_key_fingerprint=ssh_access["fingerprint"],
        credentials_encrypted=encrypt_credentials({"private_key": ssh_access["private_key"]}),
    )
    tmp_path.chmod(0o755)
    clean, evil = qcow2(tmp_path / "clean.qcow2"), evil_backing(tmp_path / "evil.qcow2")
    with server_files(server) as files:
        assert images.remote_image_check(str(clean), "qcow2", run=files.run)["format"] == "qcow2"
        with pytest.raises(images.UnsafeImage, match="evil.qcow2 was refused: it has a backing file"):
            images.remote_image_check(str(evil), "qcow2", run=files.run)
        with pytest.raises(images.UnsafeImage, match="declared raw but is a qcow2 image"):
            images.remote_image_check(str(clean), "raw", run=files.run)
