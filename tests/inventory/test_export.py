"""Export of a stopped VM as an OVA (seed 7.7 "Exporting Virtual Machines"): OVF 1.0 +
SHA256 manifest + streamOptimized VMDKs in the repository's Assemblies/, converted on
the VM's server (this machine's libvirtd, transport local; and the loopback sshd).

Checked for real: the tar's order, the descriptor parsed back, each disk compared to
its source with ``qemu-img compare``, the OVA imported again by ovmweb's own
appliance import and deployed; the rules (stopped only, more than once, four at a
time, resume after an abort keeps the disks already converted)."""

import hashlib
import re
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from rest_framework.test import APIClient

from ovmweb.errors import Conflict
from ovmweb.inventory import rules
from ovmweb.inventory.choices import VmStatus
from ovmweb.inventory.models import VirtualAppliance, VirtualDisk
from ovmweb.inventory.services import appliances, export_ovf, exports, storage, vm_copies, vms
from ovmweb.jobs.choices import JobStatus
from ovmweb.jobs.models import Job
from ovmweb.jobs.runner import run_job
from ovmweb.jobs.services import job_finish, job_request_abort, job_submit
from ovmweb.jobs.testing import run_pending_jobs
from tests import factories as f

from .conftest import GUEST_DIR

STAMPED = re.compile(r"(?P<slug>[a-z0-9-]+)-\d{8}T\d{6}Z(-\d+)?\.ova")


def _qemu_info(path) -> dict:
    import json

    return json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(path)], check=True, capture_output=True, text=True
        ).stdout
    )


def _same_content(a, b, fmt_a=None, fmt_b=None) -> bool:
    argv = [
        "qemu-img",
        "compare",
        "-q",
        *(["-f", fmt_a] if fmt_a else []),
        *(["-F", fmt_b] if fmt_b else []),
        str(a),
        str(b),
    ]
    return subprocess.run(argv).returncode == 0


def _disk(e, name: str, size: int, *, fill_from: Path | None = None, random_mib: int = 0) -> VirtualDisk:
    """A real qcow2 volume made by the project's disk_create, optionally filled with data."""
    job = storage.disk_create(user=e["user"], repository=e["repo"], name=name, size_bytes=size)
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCESS, job.error
    disk = job.target
    path = Path(e["repo"].path) / "VirtualDisks" / disk.volume
    source = fill_from
    if random_mib:
        source = path.with_suffix(".raw")
        with open(source, "wb") as out, open("/dev/urandom", "rb") as rnd:
            for _ in range(random_mib):
                out.write(rnd.read(1 << 20))
            out.truncate(size)
    if source is not None:
        subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(source), str(path)], check=True)
        if random_mib:
            source.unlink()
        subprocess.run(["qemu-img", "resize", "-q", "-f", "qcow2", str(path), str(size)], check=False)
    return disk


def _vm(e, disks, name="Web Server 01", **fields):
    vm = f.VirtualMachineFactory(
        server_pool=e["pool"],
        repository=e["repo"],
        name=name,
        status=VmStatus.STOPPED,
        vcpus=2,
        max_vcpus=4,
        memory_mib=768,
        max_memory_mib=1024,
        os_type="OL7",
        **fields,
    )
    for slot, (disk, bus) in enumerate(disks):
        f.VmDiskSlotFactory(vm=vm, slot=slot, virtual_disk=disk, bus=bus)
    return vm


def _run(job: Job) -> Job:
    run_pending_jobs()
    job.refresh_from_db()
    return job


def _source(e, disk: VirtualDisk) -> Path:
    return Path(e["repo"].path) / "VirtualDisks" / disk.volume


# ---------------------------------------------------------------- rules, no hypervisor


@pytest.mark.parametrize("status", [VmStatus.RUNNING, VmStatus.SUSPENDED, VmStatus.STARTING, VmStatus.TEMPLATE])
def test_only_a_stopped_vm_is_exported(user, pool, repo, status):
    vm = f.VirtualMachineFactory(server_pool=pool, repository=repo, status=status)
    with pytest.raises(Conflict, match=f"STOPPED.*{status}"):
        vm_copies.vm_export(vm=vm, user=user)
    assert not Job.objects.filter(operation="vm.export").exists()


def test_stopped_vm_in_a_pool_or_unassigned_is_queued_with_a_stamped_name(user, pool, repo):
    in_pool = f.VirtualMachineFactory(server_pool=pool, repository=repo, name="Db 1")
    unassigned = f.VirtualMachineFactory(server_pool=None, repository=repo, name="loose")
    for vm in (in_pool, unassigned):
        job = vm_copies.vm_export(vm=vm, user=user)
        assert job.operation == "vm.export" and job.status == JobStatus.QUEUED and job.target_id == vm.pk
        name = Path(job.params["ova"]).name
        assert STAMPED.fullmatch(name), name
        assert job.params["ova"].startswith(f"{repo.path}/Assemblies/")
        assert job.params["directory"] == job.params["ova"] + ".parts"
    assert STAMPED.fullmatch(Path(Job.objects.filter(target_id=in_pool.pk).get().params["ova"]).name)["slug"] == "db-1"


def test_every_export_gets_a_new_file_name(user, pool, repo):
    vm = f.VirtualMachineFactory(server_pool=pool, repository=repo, name="twice")
    names = []
    for _ in range(3):
        job = vm_copies.vm_export(vm=vm, user=user)
        names.append(Path(job.params["ova"]).name)
        job_finish(job=job, status=JobStatus.SUCCESS)  # frees the VM's lock for the next one
    assert len(set(names)) == 3, names


def test_a_vm_without_repository_needs_one_named(user, pool):
    vm = f.VirtualMachineFactory(server_pool=pool, repository=None)
    with pytest.raises(ValidationError, match="no repository"):
        vm_copies.vm_export(vm=vm, user=user)


def test_running_vm_export_answers_409(user, pool, repo):
    vm = f.VirtualMachineFactory(server_pool=pool, repository=repo, status=VmStatus.RUNNING)
    api = APIClient()
    api.force_authenticate(user)
    response = api.post(f"/api/v1/vms/{vm.pk}/export/", {}, format="json")
    assert response.status_code == 409 and "RUNNING" in response.json()["detail"]
    vm.status = VmStatus.STOPPED
    vm.save()
    response = api.post(f"/api/v1/vms/{vm.pk}/export/", {}, format="json")
    assert response.status_code == 202 and response.json()["operation"] == "vm.export"


def test_resume_refusals(user, pool, repo):
    vm = f.VirtualMachineFactory(server_pool=pool, repository=repo)
    first = vm_copies.vm_export(vm=vm, user=user)
    with pytest.raises(Conflict, match="aborted or failed"):
        exports.export_resume(job=first, user=user)  # still queued
    job_finish(job=first, status=JobStatus.FAILURE, error="server went away")
    other = f.VirtualMachineFactory(server_pool=pool, repository=repo)
    with pytest.raises(ValidationError, match="not an export of"):
        vm_copies.vm_export(vm=other, user=user, resume_job=first)
    second = vm_copies.vm_export(vm=vm, user=user, resume_job=first)
    assert second.params["resumed_from"] == first.pk
    assert {k: v for k, v in second.params.items() if k != "resumed_from"} == first.params
    job_finish(job=second, status=JobStatus.ABORTED)
    with pytest.raises(Conflict, match=f"already resumed as job #{second.pk}"):
        exports.export_resume(job=first, user=user)
    f.VmDiskSlotFactory(vm=vm, slot=3)
    with pytest.raises(Conflict, match="disks of .* changed"):
        exports.export_resume(job=second, user=user)
    clone = job_submit(operation="vm.clone", summary="x", target=vm)
    job_finish(job=clone, status=JobStatus.FAILURE)
    with pytest.raises(Conflict, match="not an export"):
        exports.export_resume(job=clone, user=user)


def test_export_slots_are_four():
    assert rules.MAX_CONCURRENT_EXPORTS == 4


def test_slots_are_taken_once_each_and_freed_when_the_job_ends(db):
    jobs = [job_submit(operation="vm.export", summary=f"e{i}") for i in range(5)]
    assert [exports.export_slot_acquire(job=j) for j in jobs] == [True, True, True, True, False]
    assert exports.export_slot_acquire(job=jobs[0])  # a holder keeps its slot
    assert exports.exports_running() == 4
    job_finish(job=jobs[2], status=JobStatus.SUCCESS)
    assert exports.exports_running() == 3
    assert exports.export_slot_acquire(job=jobs[4])
    assert not exports.export_slot_acquire(job=job_submit(operation="vm.export", summary="e5"))


def test_descriptor_parses_back_and_escapes(user, pool, repo):
    vm = f.VirtualMachineFactory(
        server_pool=pool,
        repository=repo,
        name='a&b <"x">',
        vcpus=3,
        max_vcpus=4,
        memory_mib=1536,
        max_memory_mib=2048,
        os_type="RHEL6",
        description="fish & chips",
    )
    f.VnicFactory(vm=vm, model="e1000")
    disks = [
        {"file": f"d{i}.vmdk", "bus": "ide", "capacity_bytes": (i + 1) << 30, "size_bytes": 1000 + i} for i in range(3)
    ]
    text = export_ovf.build_ovf(vm=vm, disks=disks)
    ovf = appliances.parse_ovf(text)
    (parsed,) = ovf.vms
    assert (parsed.name, parsed.vcpus, parsed.memory_mib, parsed.os_type) == ('a&b <"x">', 3, 1536, "RHEL6")
    assert [(d.href, d.capacity_bytes) for d in parsed.disks] == [
        ("d0.vmdk", 1 << 30),
        ("d1.vmdk", 2 << 30),
        ("d2.vmdk", 3 << 30),
    ]
    # Two disks per IDE controller: the third goes on a second one.
    import xml.etree.ElementTree as ET

    rasd = "{http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData}"
    items = list(ET.fromstring(text).iter("{http://schemas.dmtf.org/ovf/envelope/1}Item"))
    controllers = [i for i in items if i.findtext(f"{rasd}ResourceType") == "5"]
    assert [c.findtext(f"{rasd}Address") for c in controllers] == ["0", "1"]
    nic = next(i for i in items if i.findtext(f"{rasd}ResourceType") == "10")
    assert (
        nic.findtext(f"{rasd}ResourceSubType") == "E1000"
        and nic.findtext(f"{rasd}Connection") == vm.vnics.get().network.name
    )
    for item in items:  # rasd elements in alphabetical order, as CIM's schema has them
        tags = [child.tag for child in item]
        assert tags == sorted(tags)


# ---------------------------------------------------------------- real libvirtd, local transport


@pytest.mark.integration
def test_export_ova_and_import_it_back(real_estate, tmp_path):
    e = real_estate
    boot = _disk(e, "boot", 64 << 20, fill_from=GUEST_DIR / "tiny.iso")
    data = _disk(e, "data", 32 << 20, random_mib=4)
    vm = _vm(e, [(boot, "sata"), (data, "virtio")])
    job = _run(vm_copies.vm_export(vm=vm, user=e["user"]))
    assert job.status == JobStatus.SUCCESS, (job.error, job.log)
    ova = Path(job.result["ova"])
    assert ova.parent == Path(e["repo"].path) / "Assemblies" and STAMPED.fullmatch(ova.name)
    assert not Path(job.params["directory"]).exists()  # the work directory is gone
    assert job.progress == 100 and "Disk 2 of 2 (slot 1) converted" in job.log
    assert [d["converted"] for d in job.result["disks"]] == [True, True]

    with tarfile.open(ova) as tar:
        members = tar.getmembers()
        assert all(m.isfile() for m in members)
        names = [m.name for m in members]
        assert names == [
            "web-server-01.ovf",
            "web-server-01.mf",
            "web-server-01-disk0.vmdk",
            "web-server-01-disk1.vmdk",
        ]
        tar.extractall(tmp_path / "x", filter="data")
    with open(ova, "rb") as fh:
        header = fh.read(512)
    assert header[257:265] == b"ustar\x0000"  # POSIX ustar, as OVF asks (not GNU tar's own format)
    assert header[:100].rstrip(b"\0") == b"web-server-01.ovf"
    x = tmp_path / "x"
    ovf = appliances.parse_ovf((x / names[0]).read_bytes())
    (system,) = ovf.vms
    assert (system.name, system.vcpus, system.memory_mib, system.os_type) == ("Web Server 01", 2, 768, "OL7")
    assert [(d.href, d.capacity_bytes) for d in system.disks] == [(names[2], 64 << 20), (names[3], 32 << 20)]
    manifest = dict(
        re.fullmatch(r"SHA256\((.+)\)= ([0-9a-f]{64})", line).groups()
        for line in (x / names[1]).read_text().splitlines()
    )
    assert manifest == {n: hashlib.sha256((x / n).read_bytes()).hexdigest() for n in (names[0], names[2], names[3])}
    for member, source in ((names[2], boot), (names[3], data)):
        info = _qemu_info(x / member)
        assert info["format"] == "vmdk" and info["format-specific"]["data"]["create-type"] == "streamOptimized"
        assert info["virtual-size"] == source.size_bytes
        assert _same_content(x / member, _source(e, source), "vmdk", "qcow2")

    # Round trip: ovmweb's own appliance import takes it back, and a VM made from it
    # gets the same shape and the same disk contents.
    with open(ova, "rb") as fh:
        imported = _run(
            appliances.appliance_import(user=e["user"], repository=e["repo"], fileobj=fh, filename=ova.name)
        )
    assert imported.status == JobStatus.SUCCESS, imported.error
    appliance = VirtualAppliance.objects.get(pk=imported.result["appliance_id"])
    avm = appliance.vms.get()
    assert (avm.name, avm.vcpus, avm.memory_mib, avm.os_type) == ("Web Server 01", 2, 768, "OL7")
    assert sorted(d.size_bytes for d in avm.disks.all()) == [32 << 20, 64 << 20]
    copy = vms.vm_create(
        user=e["user"],
        name="copy",
        server_pool=e["pool"],
        domain_type="HVM",
        os_type="OL7",
        source={"kind": "appliance", "appliance_vm": avm},
    )
    run_pending_jobs()
    deploy = Job.objects.get(operation="appliance.deploy")
    assert deploy.status == JobStatus.SUCCESS, deploy.error
    copied = [s.virtual_disk for s in copy.disk_slots.order_by("slot")]
    assert len(copied) == 2
    by_size = {d.size_bytes: d for d in copied}
    assert _same_content(_source(e, by_size[64 << 20]), _source(e, boot), "qcow2", "qcow2")
    assert _same_content(_source(e, by_size[32 << 20]), _source(e, data), "qcow2", "qcow2")

    # Exported again: a second file, the first one stays.
    again = _run(vm_copies.vm_export(vm=vm, user=e["user"]))
    assert again.status == JobStatus.SUCCESS, again.error
    assert Path(again.result["ova"]) != ova and ova.is_file() and Path(again.result["ova"]).is_file()


def _run_in_thread(job: Job) -> threading.Thread:
    def work():
        try:
            run_job(job.pk)
        finally:
            connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    return thread


def _wait_log(job: Job, needle: str, timeout: float = 120) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if needle in job.log or job.status in JobStatus.DONE:
            return job
        time.sleep(0.05)
    return job


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_abort_mid_way_then_resume_keeps_the_converted_disk(real_estate):
    e = real_estate
    small = _disk(e, "small", 16 << 20, random_mib=2)
    # Random data does not compress: its streamOptimized conversion takes a while.
    big = _disk(e, "big", 384 << 20, random_mib=384)
    vm = _vm(e, [(small, "sata"), (big, "sata")], name="resumable")
    job = vm_copies.vm_export(vm=vm, user=e["user"])
    thread = _run_in_thread(job)
    job = _wait_log(job, "Disk 1 of 2 (slot 0) converted")
    assert job.status == JobStatus.RUNNING, (job.status, job.error, job.log)
    job_request_abort(job=job, user=e["user"])
    thread.join(120)
    job.refresh_from_db()
    assert job.status == JobStatus.ABORTED, (job.error, job.log)
    parts = Path(job.params["directory"])
    kept = parts / "resumable-disk0.vmdk"
    assert kept.is_file() and not (parts / "resumable-disk1.vmdk").exists()
    assert not list(parts.glob("*.part")), list(parts.iterdir())  # the interrupted conversion left nothing
    assert not Path(job.params["ova"]).exists()
    assert "Partial export kept in" in job.log

    # The VM stays exportable; the resumed job converts only the second disk.
    resumed = vm_copies.vm_export(vm=vm, user=e["user"], resume_job=job)
    assert resumed.params["ova"] == job.params["ova"]
    thread = _run_in_thread(resumed)
    thread.join(300)
    resumed.refresh_from_db()
    assert resumed.status == JobStatus.SUCCESS, (resumed.error, resumed.log)
    assert "Disk 1 of 2 (slot 0) was converted by an earlier run: kept." in resumed.log
    assert "Disk 1 of 2 (slot 0) converted." not in resumed.log
    assert [d["converted"] for d in resumed.result["disks"]] == [False, True]
    assert resumed.result["resumed_from"] == job.pk
    with tarfile.open(resumed.result["ova"]) as tar:
        assert [m.name for m in tar.getmembers()][0] == "resumable.ovf"
        disk1 = tar.extractfile("resumable-disk1.vmdk").read()
    out = Path(e["repo"].path) / "check.vmdk"
    out.write_bytes(disk1)
    assert _same_content(out, _source(e, big), "vmdk", "qcow2")
    with pytest.raises(Conflict, match="aborted or failed"):
        exports.export_resume(job=resumed, user=e["user"])


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_fifth_export_waits_for_a_free_slot(real_estate):
    e = real_estate
    vm = _vm(e, [(_disk(e, "one", 16 << 20), "sata")], name="fifth")
    holders = [job_submit(operation="vm.export", summary=f"other export {i}") for i in range(4)]
    Job.objects.filter(pk__in=[h.pk for h in holders]).update(status=JobStatus.RUNNING)
    assert all(exports.export_slot_acquire(job=h) for h in holders)
    job = vm_copies.vm_export(vm=vm, user=e["user"])
    thread = _run_in_thread(job)
    job = _wait_log(job, "queued: 4 exports running")
    assert "queued: 4 exports running" in job.log, job.log
    time.sleep(1.5)
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.progress == 0 and "Exporting" not in job.log
    job_finish(job=holders[1], status=JobStatus.SUCCESS)
    thread.join(120)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCESS, (job.error, job.log)
    assert exports.exports_running() == 3  # its own slot went with it


# ---------------------------------------------------------------- the same machine as an SSH server


def _ssh_estate(e, ssh_access, tmp_path):
    """This machine discovered again over the loopback sshd (transport ssh, pinned host key),
    with a local repository of its own."""
    import uuid

    from ovmweb.inventory.models import Repository, Server
    from ovmweb.inventory.services import pools, repositories, servers

    pool = pools.server_pool_create(user=e["user"], name=f"ssh-{uuid.uuid4().hex[:6]}")
    job = servers.server_discover(
        user=e["user"],
        hostname="127.0.0.1",
        transport="ssh",
        ssh_port=ssh_access["port"],
        ssh_user="root",
        private_key=ssh_access["private_key"],
        host_key_fingerprint=ssh_access["fingerprint"],
        name="over-ssh",
        server_pool=pool,
    )
    assert _run(job).status == JobStatus.SUCCESS, job.error
    server = Server.objects.get(name="over-ssh")
    (tmp_path / "ssh-repo").mkdir()
    job = repositories.repository_create(
        user=e["user"],
        name="ssh-repo",
        kind="LOCAL",
        path=str(tmp_path / "ssh-repo"),
        server=server,
        server_pools=[pool],
    )
    assert _run(job).status == JobStatus.SUCCESS, job.error
    return {**e, "pool": pool, "server": server, "repo": Repository.objects.get(name="ssh-repo")}


def _pgrep(pattern: str) -> str:
    return subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True).stdout.strip()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_export_over_ssh_and_abort_stops_the_remote_conversion(real_estate, ssh_access, tmp_path):
    e = _ssh_estate(real_estate, ssh_access, tmp_path)
    small = _disk(e, "small", 16 << 20, random_mib=1)
    big = _disk(e, "big", 384 << 20, random_mib=384)
    vm = _vm(e, [(small, "ide"), (big, "ide")], name="remote")
    job = vm_copies.vm_export(vm=vm, user=e["user"])
    thread = _run_in_thread(job)
    job = _wait_log(job, "Disk 1 of 2 (slot 0) converted")
    assert job.status == JobStatus.RUNNING, (job.error, job.log)
    part = f"{job.params['directory']}/remote-disk1.vmdk.part"
    deadline = time.monotonic() + 30
    while part not in _pgrep("qemu-img convert") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert part in _pgrep("qemu-img convert")  # the conversion runs (a command of the sshd session)
    job_request_abort(job=job, user=e["user"])
    thread.join(120)
    job.refresh_from_db()
    assert job.status == JobStatus.ABORTED, (job.error, job.log)
    # Closing the session's terminal hung the remote qemu-img up: nothing keeps writing.
    deadline = time.monotonic() + 10
    while part in _pgrep("qemu-img convert") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert part not in _pgrep("qemu-img convert")
    assert not Path(part).exists()

    resumed = _run(vm_copies.vm_export(vm=vm, user=e["user"], resume_job=job))
    assert resumed.status == JobStatus.SUCCESS, (resumed.error, resumed.log)
    assert resumed.result["server_id"] == e["server"].pk
    assert [d["converted"] for d in resumed.result["disks"]] == [False, True]
    with tarfile.open(resumed.result["ova"]) as tar:
        names = [m.name for m in tar.getmembers()]
        ovf = appliances.parse_ovf(tar.extractfile(names[0]).read())
        manifest = tar.extractfile(names[1]).read().decode()
        assert hashlib.sha256(tar.extractfile(names[0]).read()).hexdigest() in manifest
    assert names == ["remote.ovf", "remote.mf", "remote-disk0.vmdk", "remote-disk1.vmdk"]
    assert [d.capacity_bytes for d in ovf.vms[0].disks] == [16 << 20, 384 << 20]


def test_resume_through_the_api(user, pool, repo):
    from django.contrib.auth.models import Permission

    vm = f.VirtualMachineFactory(server_pool=pool, repository=repo)
    job = vm_copies.vm_export(vm=vm, user=user)
    api = APIClient()
    api.force_authenticate(user)
    assert api.post(f"/api/v1/jobs/{job.pk}/resume/", {}, format="json").status_code == 409  # still queued
    job_finish(job=job, status=JobStatus.ABORTED)
    viewer = f.UserFactory()
    viewer.user_permissions.add(Permission.objects.get(codename="view_virtualmachine"))
    other = APIClient()
    other.force_authenticate(viewer)
    assert other.post(f"/api/v1/jobs/{job.pk}/resume/", {}, format="json").status_code == 403
    response = api.post(f"/api/v1/jobs/{job.pk}/resume/", {}, format="json")
    assert response.status_code == 202, response.json()
    resumed = Job.objects.get(pk=response.json()["id"])
    assert resumed.operation == "vm.export" and resumed.params["resumed_from"] == job.pk
    start = job_submit(operation="vm.start", summary="s", target=vm)
    job_finish(job=start, status=JobStatus.FAILURE)
    response = api.post(f"/api/v1/jobs/{start.pk}/resume/", {}, format="json")
    assert response.status_code == 409 and "not an export" in response.json()["detail"]


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``, read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    # a zombie is dead, only not yet reaped by init
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _poll(probe, timeout: float):
    """``probe()`` every 50 ms until it returns something true or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while not (value := probe()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def _start_local_stream_worker(tmp_path) -> subprocess.Popen:
    """A process that streams ``sleep 300`` through ExportHost._stream_local, as an export job's worker does."""
    import sys

    script = tmp_path / "worker.py"
    script.write_text(
        "import django\n"
        "django.setup()\n"
        "from ovmweb.inventory.services.export_host import ExportHost\n"
        "ExportHost._stream_local(['sleep', '300'], lambda data: None, lambda: None)\n"
    )
    return subprocess.Popen(
        [sys.executable, str(script)], cwd=str(Path(__file__).resolve().parents[2]), stderr=subprocess.PIPE
    )


def test_a_local_conversion_dies_with_the_worker_that_started_it(tmp_path):
    """SIGKILL of the process streaming a local command takes the command with it."""
    import signal

    worker = _start_local_stream_worker(tmp_path)
    kids = _poll(lambda: _children(worker.pid), 30)
    if not kids:
        worker.kill()
        raise AssertionError(f"the worker never started its command: {worker.communicate()[1][-2000:]!r}")
    child = kids[0]
    worker.send_signal(signal.SIGKILL)
    worker.wait()

    _poll(lambda: not _running(child), 10)
    assert not _running(child), "the command outlived the worker"
