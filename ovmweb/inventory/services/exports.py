"""Exporting a virtual machine (seed 7.7 "Exporting Virtual Machines") as an OVA.

The seed exports to Oracle Cloud Infrastructure through the Oracle VM Exporter
Appliance, which does not exist here. What an administrator of their own estate
gets instead is a standard OVA in a repository's ``Assemblies/``: a tar whose first
member is an OVF 1.0 descriptor, then a SHA256 manifest (``.mf``), then one
**streamOptimized VMDK** per virtual disk. That disk format is the one OVAs are
expected to carry: VMware, VirtualBox, oVirt/virt-v2v and OCI's image import read
it, ``qemu-img`` writes and reads it, and libvirt's directory pools recognise it,
so ovmweb's own appliance import (``appliances.py``) takes the OVA back and makes
VMs from it (the disks are converted to qcow2 then). qcow2 inside an OVA is read
by few tools besides QEMU's.

The work runs on a server that sees the VM's disks and the target repository,
never on the manager: ``qemu-img convert`` and ``tar`` as subprocesses for the
``local`` transport, as commands on one pinned SSH connection otherwise.

The seed's rules kept here and in ``rules.py``:
- only a stopped VM, in a server pool or unassigned (``rules.check_export``);
- a VM can be exported more than once: each export is a new file,
  ``<vm>-<UTC timestamp>.ova``;
- at most ``rules.MAX_CONCURRENT_EXPORTS`` exports run at once; the others wait
  (job log: "queued: N exports running") until a slot is free;
- an export is a job like all others, and one that was aborted or failed can be
  resumed (``export_resume``): a new job with the same target, which keeps every
  disk already converted (``<vm>-<stamp>.ova.parts/<vm>-disk<slot>.vmdk`` exists
  only once its conversion has finished) and converts only the rest. Through the
  API: ``POST /api/v1/jobs/{id}/resume/``; in code: ``vms.vm_export(vm=, user=,
  resume_job=job)``.

Not exported: CD-ROM slots (the ISOs stay in the repository) and ovmweb-specific
settings without an OVF equivalent (domain type is named in the VirtualSystem's
Info, HA, pinning, keymap). virtio-blk disks are described on an LSI Logic SCSI
controller, as OVF has no virtio controller.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shlex
import shutil
import subprocess
import time
from collections import deque
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone, translation
from django.utils.text import slugify
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict
from ovmweb.jobs.choices import JobStatus
from ovmweb.jobs.models import Job, ObjectLock
from ovmweb.jobs.services import event_record, job_submit

from .. import rules
from ..choices import DiskSlotKind, OsType, ServerStatus
from ..models import Repository, Server, VirtualMachine
from .repositories import repository_servers
from .server_files import SftpFiles, server_files

OPERATION = "vm.export"
DISK_EXTENSION = "vmdk"
OVF_DISK_FORMAT = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
# vmx-10 is the first VMware hardware family with an AHCI (SATA) controller; other
# importers (VirtualBox, oVirt) do not check the family.
VIRTUAL_SYSTEM_TYPE = "vmx-10"
# Seconds between two looks for a free export slot, and between two abort checks
# while a command runs.
SLOT_POLL = 1.0
ABORT_POLL = 0.5
# ustar stores sizes up to 8 GiB - 1; a larger disk needs the POSIX (pax) format.
USTAR_MAX = 8 * 1024**3 - 1
TAR_RECORD = 10240  # GNU tar's default record (blocking factor 20)
TAR_CHECKPOINT = 1024  # records between two progress lines (10 MiB)

# An export holds one of MAX_CONCURRENT_EXPORTS slots for as long as it runs. A slot is
# an ObjectLock on a reserved key (job content type, object id SLOT_BASE + n; no job
# has such an id): the unique constraint decides between concurrent exports without a
# read-then-write window, and the job's locks are released when it ends, whatever the
# outcome, and by recovery after a crash.
SLOT_BASE = 1 << 62

# CIM_OperatingSystem OsType values (DMTF) for the OVF OperatingSystemSection.
CIM_OS_TYPES = {
    OsType.ORACLE_LINUX_5: 109,
    OsType.ORACLE_LINUX_6: 109,
    OsType.ORACLE_LINUX_7: 109,
    OsType.RHEL_6: 80,
    OsType.RHEL_7: 80,
    OsType.SOLARIS_X86: 29,
    OsType.SOLARIS_SPARC: 29,
    OsType.WINDOWS: 1,
    OsType.OTHER_LINUX: 101,
    OsType.OTHER: 1,
}
# Disk bus -> (CIM resource type, resource subtype, disks per controller, VMDK adapter type).
# virtio-blk has no OVF controller: such disks are put on an LSI Logic SCSI controller.
CONTROLLERS = {
    "ide": (5, "PIIX4", 2, "ide"),
    "sata": (20, "AHCI", 30, "lsilogic"),
    "virtio": (6, "lsilogic", 15, "lsilogic"),
}
NIC_SUBTYPES = {"e1000": "E1000", "rtl8139": "PCNet32", "virtio": "VirtIO"}
QEMU_PROGRESS = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")
TAR_PROGRESS = re.compile(rb"tar: (\d+)")


class ExportError(Conflict):
    """An export step that failed on the server, with what the command said."""


# --------------------------------------------------------------------------
# submit / resume
# --------------------------------------------------------------------------


def _stamp() -> str:
    return timezone.now().strftime("%Y%m%dT%H%M%SZ")


def _base_name(vm: VirtualMachine) -> str:
    return slugify(vm.name)[:60].strip("-_") or "vm"


def _disk_plan(vm: VirtualMachine) -> list[dict[str, Any]]:
    """Every virtual disk of the VM, in slot order. CD-ROMs (ISOs) are not exported."""
    from .vm_devices import disk_path

    plan = []
    for slot in (
        vm.disk_slots.filter(kind=DiskSlotKind.DISK, virtual_disk__isnull=False)
        .select_related("virtual_disk__repository")
        .order_by("slot")
    ):
        disk = slot.virtual_disk
        plan.append(
            {
                "slot": slot.slot,
                "disk_id": disk.pk,
                "bus": slot.bus,
                "source": disk_path(disk),
                "source_format": disk.format,
                "repository_id": disk.repository_id,
            }
        )
    return plan


def export_server(*, vm: VirtualMachine, repository: Repository, plan: list[dict]) -> Server:
    """A running server that sees the target repository and every disk's repository
    (the VM's own server if it qualifies); the export runs there."""
    repo_ids = {repository.pk} | {d["repository_id"] for d in plan}
    candidates: set[int] | None = None
    for repo in Repository.objects.filter(pk__in=repo_ids):
        ids = {s.pk for s in repository_servers(repo)}
        candidates = ids if candidates is None else candidates & ids
    servers = list(Server.objects.filter(pk__in=candidates or (), status=ServerStatus.RUNNING).order_by("pk"))
    if not servers:
        raise Conflict(
            _(
                "No running server sees repository %(repo)s and every disk of %(vm)s: the export needs one "
                "to convert the disks on."
            )
            % {"repo": repository.name, "vm": vm.name}
        )
    own = next((s for s in servers if s.pk == vm.server_id), None)
    return own or servers[0]


def _unique_base(vm: VirtualMachine, base: str) -> str:
    """``<vm>-<stamp>``, with a counter if an export of the same second already used it."""
    used = {
        PurePosixPath(p.get("ova", "")).name
        for p in Job.objects.filter(
            operation=OPERATION, target_type=ContentType.objects.get_for_model(VirtualMachine), target_id=vm.pk
        ).values_list("params", flat=True)
        if isinstance(p, dict)
    }
    name, n = base, 1
    while f"{name}.ova" in used:
        n += 1
        name = f"{base}-{n}"
    return name


def export_submit(*, vm: VirtualMachine, user, repository: Repository | None = None) -> Job:
    """Queue the export of a stopped VM as ``<repo>/Assemblies/<vm>-<UTC stamp>.ova``
    (``repository`` defaults to the VM's own)."""
    with transaction.atomic():
        current = VirtualMachine.objects.select_for_update(of=("self",)).select_related("repository").get(pk=vm.pk)
        rules.check_export(current)
        target = repository or current.repository
        if target is None:
            raise ValidationError(
                {
                    "repository": [
                        _("%(vm)s has no repository; name the repository to export into.") % {"vm": current.name}
                    ]
                }
            )
        plan = _disk_plan(current)
        slug = _base_name(current)
        base = _unique_base(current, f"{slug}-{_stamp()}")
        assemblies = f"{target.path}/Assemblies"
        params = {
            "vm_id": current.pk,
            "repository_id": target.pk,
            "ova": f"{assemblies}/{base}.ova",
            "directory": f"{assemblies}/{base}.ova.parts",
            "name": slug,
            "disks": [{**d, "file": f"{slug}-disk{d['slot']}.{DISK_EXTENSION}"} for d in plan],
        }
        return job_submit(
            operation=OPERATION,
            summary=_("Export virtual machine %(vm)s to %(ova)s") % {"vm": current.name, "ova": f"{base}.ova"},
            user=user,
            target=current,
            lock=[current],
            params=params,
        )


def export_resume(*, job: Job, user) -> Job:
    """Resume an export that was aborted or failed: a new job with the same target file
    and work directory; disks already converted are kept, the rest are converted."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.operation != OPERATION:
            raise Conflict(_("Job #%(id)s is not an export.") % {"id": job.pk})
        if job.status not in (JobStatus.FAILURE, JobStatus.ABORTED):
            raise Conflict(
                _("Only an aborted or failed export can be resumed; job #%(id)s is %(status)s.")
                % {"id": job.pk, "status": job.status}
            )
        later = Job.objects.filter(operation=OPERATION, params__resumed_from=job.pk).order_by("-pk").first()
        if later is not None:
            raise Conflict(
                _("Export job #%(id)s was already resumed as job #%(later)s; resume that one.")
                % {"id": job.pk, "later": later.pk}
            )
        params = dict(job.params)
        vm = VirtualMachine.objects.select_for_update(of=("self",)).filter(pk=params.get("vm_id")).first()
        if vm is None:
            raise Conflict(_("The virtual machine of export job #%(id)s no longer exists.") % {"id": job.pk})
        rules.check_export(vm)
        now = [(d["slot"], d["disk_id"]) for d in _disk_plan(vm)]
        if now != [(d["slot"], d["disk_id"]) for d in params["disks"]]:
            raise Conflict(
                _("The disks of %(vm)s changed since export job #%(id)s; export it again instead.")
                % {"vm": vm.name, "id": job.pk}
            )
        params["resumed_from"] = job.pk
        return job_submit(
            operation=OPERATION,
            summary=_("Resume export of %(vm)s to %(ova)s") % {"vm": vm.name, "ova": PurePosixPath(params["ova"]).name},
            user=user,
            target=vm,
            lock=[vm],
            params=params,
        )


# --------------------------------------------------------------------------
# concurrency: export slots
# --------------------------------------------------------------------------


def _slot_type() -> ContentType:
    return ContentType.objects.get_for_model(Job)


def export_slot_acquire(*, job: Job) -> bool:
    """Take a free export slot for ``job`` (kept until the job ends); False if all are taken."""
    ct = _slot_type()
    if ObjectLock.objects.filter(job=job, content_type=ct, object_id__gt=SLOT_BASE).exists():
        return True
    for n in range(1, rules.MAX_CONCURRENT_EXPORTS + 1):
        try:
            with transaction.atomic():
                ObjectLock.objects.create(content_type=ct, object_id=SLOT_BASE + n, job=job)
            return True
        except IntegrityError:
            continue
    return False


def exports_running() -> int:
    """How many exports hold a slot now."""
    return ObjectLock.objects.filter(content_type=_slot_type(), object_id__gt=SLOT_BASE).count()


def export_wait_for_slot(
    *, job: Job, progress: Callable[..., None], check_abort: Callable[[], None], poll: float = SLOT_POLL
) -> None:
    """Block until ``job`` holds an export slot; says so in the job log while it waits."""
    said = None
    while not export_slot_acquire(job=job):
        running = exports_running()
        if running != said:
            progress(0, _("queued: %(n)d exports running") % {"n": running})
            said = running
        check_abort()
        time.sleep(poll)


# --------------------------------------------------------------------------
# commands on the server
# --------------------------------------------------------------------------


def _dies_with_caller(argv: list[str]) -> list[str]:
    """``argv`` run so that the kernel kills it when the thread that started it dies.

    A worker killed mid-export (SIGKILL, OOM) would otherwise leave its qemu-img
    converting for minutes, holding the disk open while recovery marks the job
    failed and a resumed export starts a second conversion of the same file.
    util-linux's setpriv sets PR_SET_PDEATHSIG before exec; subprocess's
    preexec_fn could do it too, but is unsafe in a threaded worker."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv


class ExportHost:
    """Commands and small files on the server doing the export."""

    def __init__(self, files):
        self.files = files

    def run(self, argv: list[str], *, timeout: float = 600) -> str:
        code, out, err = self.files.run(argv, timeout=timeout)
        if code != 0:
            raise ExportError(
                _("%(cmd)s failed (exit %(code)s): %(err)s")
                % {"cmd": argv[0], "code": code, "err": (err or out).strip()[-500:]}
            )
        return out

    def write(self, path: str, data: bytes) -> None:
        self.files.write(path, [data])

    def stream(self, argv: list[str], *, on_output: Callable[[bytes], None], check_abort: Callable[[], None]) -> None:
        """Run a long command, feeding each output line (``\\r`` or ``\\n`` ended) to
        ``on_output``; ``check_abort`` runs every ABORT_POLL seconds and, if it raises,
        the command is stopped before the exception goes on."""
        tail: deque[bytes] = deque(maxlen=20)
        buffer = b""

        def feed(data: bytes) -> None:
            nonlocal buffer
            buffer += data
            *lines, buffer = re.split(rb"[\r\n]", buffer)
            for line in lines:
                if line.strip():
                    tail.append(line)
                    on_output(line)

        if isinstance(self.files, SftpFiles):
            code = self._stream_ssh(argv, feed, check_abort)
        else:
            code = self._stream_local(argv, feed, check_abort)
        if buffer.strip():
            tail.append(buffer)
        if code != 0:
            said = b" | ".join(line.strip() for line in list(tail)[-3:]).decode("utf-8", "replace")
            raise ExportError(
                _("%(cmd)s failed (exit %(code)s): %(err)s") % {"cmd": argv[0], "code": code, "err": said}
            )

    @staticmethod
    def _stream_local(argv, feed, check_abort) -> int:
        proc = subprocess.Popen(
            _dies_with_caller(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ)
                while True:
                    if sel.select(timeout=ABORT_POLL):
                        data = os.read(proc.stdout.fileno(), 65536)
                        if not data:
                            break
                        feed(data)
                    check_abort()
            return proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()

    def _stream_ssh(self, argv, feed, check_abort) -> int:
        channel = self.files.client.get_transport().open_session()
        try:
            # With a terminal, closing the channel hangs the command up on the server.
            channel.get_pty(width=200)
            channel.settimeout(ABORT_POLL)
            channel.exec_command(shlex.join(argv))
            while True:
                try:
                    data = channel.recv(65536)
                except TimeoutError:
                    data = None
                if data == b"":
                    break
                if data:
                    feed(data)
                check_abort()
            return channel.recv_exit_status()
        finally:
            channel.close()


# --------------------------------------------------------------------------
# the OVF descriptor
# --------------------------------------------------------------------------


def _item(**fields: Any) -> str:
    # CIM puts the rasd elements of an Item in alphabetical order; strict readers check it.
    body = "".join(f"<rasd:{k}>{escape(str(v))}</rasd:{k}>" for k, v in sorted(fields.items()))
    return f"      <Item>{body}</Item>\n"


def build_ovf(*, vm: VirtualMachine, disks: list[dict[str, Any]]) -> str:
    """An OVF 1.0 descriptor of ``vm``. ``disks`` items: ``file``, ``bus``, ``capacity_bytes``,
    ``size_bytes`` (of the converted file)."""
    with translation.override("en"):
        os_label = str(OsType(vm.os_type).label) if vm.os_type in OsType.values else str(vm.os_type)
    refs, disk_section, items = "", "", []
    instance = 1
    items.append(
        _item(
            AllocationUnits="hertz * 10^6",
            Description="Number of virtual CPUs",
            ElementName=f"{vm.vcpus} virtual CPU(s)",
            InstanceID=instance,
            ResourceType=3,
            VirtualQuantity=vm.vcpus,
        )
    )
    instance += 1
    items.append(
        _item(
            AllocationUnits="byte * 2^20",
            Description="Memory size",
            ElementName=f"{vm.memory_mib} MB of memory",
            InstanceID=instance,
            ResourceType=4,
            VirtualQuantity=vm.memory_mib,
        )
    )
    controllers: dict[tuple[str, int], int] = {}
    per_bus: dict[str, int] = {}
    for n, disk in enumerate(disks):
        file_id, disk_id = f"file{n + 1}", f"vmdisk{n + 1}"
        refs += f'    <File ovf:href={quoteattr(disk["file"])} ovf:id="{file_id}" ovf:size="{disk["size_bytes"]}"/>\n'
        disk_section += (
            f'    <Disk ovf:capacity="{disk["capacity_bytes"]}" ovf:capacityAllocationUnits="byte" '
            f'ovf:diskId="{disk_id}" ovf:fileRef="{file_id}" ovf:format="{OVF_DISK_FORMAT}"/>\n'
        )
        bus = disk["bus"] if disk["bus"] in CONTROLLERS else "sata"
        kind, subtype, per_controller, _adapter = CONTROLLERS[bus]
        index = per_bus.get(bus, 0)
        per_bus[bus] = index + 1
        key = (bus, index // per_controller)
        if key not in controllers:
            instance += 1
            controllers[key] = instance
            items.append(
                _item(
                    Address=key[1],
                    Description=f"{bus.upper()} controller",
                    ElementName=f"{bus}{key[1]}",
                    InstanceID=instance,
                    ResourceSubType=subtype,
                    ResourceType=kind,
                )
            )
        instance += 1
        items.append(
            _item(
                AddressOnParent=index % per_controller,
                ElementName=f"disk{n + 1}",
                HostResource=f"ovf:/disk/{disk_id}",
                InstanceID=instance,
                Parent=controllers[key],
                ResourceType=17,
            )
        )
    networks: dict[str, str] = {}
    for n, vnic in enumerate(vm.vnics.select_related("network").order_by("position", "pk")):
        network = vnic.network.name if vnic.network_id else "unconnected"
        networks.setdefault(network, "")
        instance += 1
        items.append(
            _item(
                Address=vnic.mac,
                AutomaticAllocation="true",
                Connection=network,
                ElementName=f"ethernet{n}",
                InstanceID=instance,
                ResourceSubType=NIC_SUBTYPES.get(vnic.model, "E1000"),
                ResourceType=10,
            )
        )
    network_section = ""
    if networks:
        network_section = (
            "  <NetworkSection>\n    <Info>The logical networks used by the virtual machine</Info>\n"
            + "".join(
                f"    <Network ovf:name={quoteattr(name)}><Description>{escape(name)}</Description></Network>\n"
                for name in networks
            )
            + "  </NetworkSection>\n"
        )
    annotation = ""
    if vm.description:
        annotation = (
            f"    <AnnotationSection>\n      <Info>Description</Info>\n"
            f"      <Annotation>{escape(vm.description)}</Annotation>\n    </AnnotationSection>\n"
        )
    name = escape(vm.name)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Envelope ovf:version="1.0" xml:lang="en-US" xmlns="http://schemas.dmtf.org/ovf/envelope/1"'
        ' xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"'
        ' xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"'
        ' xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
        f"  <References>\n{refs}  </References>\n"
        f"  <DiskSection>\n    <Info>Virtual disks</Info>\n{disk_section}  </DiskSection>\n"
        f"{network_section}"
        f"  <VirtualSystem ovf:id={quoteattr(vm.name)}>\n"
        f"    <Info>A virtual machine exported by ovmweb ({escape(vm.domain_type)} guest)</Info>\n"
        f"    <Name>{name}</Name>\n{annotation}"
        f'    <OperatingSystemSection ovf:id="{CIM_OS_TYPES.get(vm.os_type, 1)}">\n'
        f"      <Info>The guest operating system</Info>\n      <Description>{escape(os_label)}</Description>\n"
        "    </OperatingSystemSection>\n"
        "    <VirtualHardwareSection>\n      <Info>Virtual hardware requirements</Info>\n"
        "      <System><vssd:ElementName>Virtual Hardware Family</vssd:ElementName><vssd:InstanceID>0</vssd:InstanceID>"
        f"<vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>"
        f"<vssd:VirtualSystemType>{VIRTUAL_SYSTEM_TYPE}</vssd:VirtualSystemType></System>\n"
        f"{''.join(items)}"
        "    </VirtualHardwareSection>\n  </VirtualSystem>\n</Envelope>\n"
    )


# --------------------------------------------------------------------------
# the export itself (run by the vm.export job)
# --------------------------------------------------------------------------


def _check_paths(params: dict, repository: Repository) -> None:
    # The job removes its work directory at the end: never anything but its own.
    assemblies = f"{repository.path}/Assemblies/"
    ova, directory = params["ova"], params["directory"]
    if not (ova.startswith(assemblies) and directory == f"{ova}.parts" and "/" not in ova[len(assemblies) :]):
        raise ExportError(_("Export target %(ova)s is not in %(dir)s.") % {"ova": ova, "dir": assemblies})


def _qemu_info(host: ExportHost, path: str, fmt: str | None = None) -> dict:
    argv = ["qemu-img", "info", "--output=json", *(["-f", fmt] if fmt else []), path]
    return json.loads(host.run(argv, timeout=120))


def _size(host: ExportHost, path: str) -> int:
    return int(host.run(["stat", "-c", "%s", path], timeout=60).strip())


def export_run(
    *, job: Job, progress: Callable[..., None], log: Callable[[str], None], check_abort: Callable[[], None]
) -> dict:
    """Convert the disks, write the descriptor and manifest, pack the OVA, on the server.
    Progress: 0-5 preparing, 5-85 disks (by capacity), 85-90 checksums, 90-100 the tar."""
    params = job.params
    vm = VirtualMachine.objects.get(pk=params["vm_id"])
    repository = Repository.objects.get(pk=params["repository_id"])
    _check_paths(params, repository)
    directory, ova, name = params["directory"], params["ova"], params["name"]
    disks = [dict(d) for d in params["disks"]]
    # Chosen when the job runs, not when it is queued: a resumed export may run on
    # another server that sees the same repositories.
    server = export_server(vm=vm, repository=repository, plan=disks)
    with server_files(server) as files:
        host = ExportHost(files)
        host.run(["mkdir", "-p", directory], timeout=60)
        _inspect_disks(host, disks, directory)
        progress(
            5,
            _("Exporting %(n)d disk(s) on %(server)s into %(ova)s.")
            % {"n": len(disks), "server": server.name, "ova": ova},
        )
        _convert_disks(host, disks, progress=progress, log=log, check_abort=check_abort)
        check_abort()
        members = _write_descriptor(host, vm=vm, disks=disks, directory=directory, name=name, check_abort=check_abort)
        progress(90, _("Descriptor and manifest written; packing the OVA."))
        tar_format = _pack(
            host, directory=directory, ova=ova, members=members, progress=progress, check_abort=check_abort
        )
        size = _size(host, ova)
        host.run(["rm", "-rf", "--", directory], timeout=600)
    result = {
        "ova": ova,
        "size_bytes": size,
        "repository_id": repository.pk,
        "server_id": server.pk,
        "disk_format": "vmdk (streamOptimized)",
        "tar_format": tar_format,
        "disks": [
            {
                "slot": d["slot"],
                "file": d["file"],
                "capacity_bytes": d["capacity_bytes"],
                "size_bytes": d["size_bytes"],
                "converted": d["converted"],
            }
            for d in disks
        ],
    }
    if params.get("resumed_from"):
        result["resumed_from"] = params["resumed_from"]
    with transaction.atomic():
        event_record(
            obj=vm,
            type="vm.exported",
            job=job,
            text=_("Virtual machine %(vm)s exported to %(ova)s (%(n)d disk(s)).")
            % {"vm": vm.name, "ova": ova, "n": len(disks)},
        )
    return result


def _inspect_disks(host: ExportHost, disks: list[dict], directory: str) -> None:
    """Each disk's capacity, target file, and whether this run converts it (``converted``)
    or an earlier, interrupted run already did (its target file exists)."""
    for disk in disks:
        disk["capacity_bytes"] = int(_qemu_info(host, disk["source"], disk["source_format"])["virtual-size"])
        disk["target"] = f"{directory}/{disk['file']}"
        code, _out, _err = host.files.run(["test", "-f", disk["target"]], timeout=60)
        # Converted by this run (True) or kept from an earlier, interrupted run.
        disk["converted"] = code != 0


def _convert_disks(
    host: ExportHost,
    disks: list[dict],
    *,
    progress: Callable[..., None],
    log: Callable[[str], None],
    check_abort: Callable[[], None],
) -> None:
    """Convert every disk not kept from an earlier run (progress 5-85, by capacity); note each size."""
    total = sum(d["capacity_bytes"] for d in disks) or 1
    done = 0
    for n, disk in enumerate(disks, 1):
        check_abort()
        if not disk["converted"]:
            log(
                _("Disk %(n)d of %(total)d (slot %(slot)s) was converted by an earlier run: kept.")
                % {"n": n, "total": len(disks), "slot": disk["slot"]}
            )
        else:
            _convert_disk(host, disk, done=done, total=total, progress=progress, check_abort=check_abort)
            progress(
                5 + int(80 * (done + disk["capacity_bytes"]) / total),
                _("Disk %(n)d of %(total)d (slot %(slot)s) converted.")
                % {"n": n, "total": len(disks), "slot": disk["slot"]},
            )
        disk["size_bytes"] = _size(host, disk["target"])
        done += disk["capacity_bytes"]


def _convert_disk(
    host: ExportHost,
    disk: dict,
    *,
    done: int,
    total: int,
    progress: Callable[..., None],
    check_abort: Callable[[], None],
) -> None:
    """One disk to a streamOptimized VMDK, through ``<target>.part`` (removed if the conversion fails)."""
    part = f"{disk['target']}.part"
    adapter = CONTROLLERS.get(disk["bus"], CONTROLLERS["sata"])[3]
    capacity = disk["capacity_bytes"]

    def on_output(line: bytes) -> None:
        match = QEMU_PROGRESS.search(line)
        if match:
            progress(5 + int(80 * (done + capacity * float(match.group(1)) / 100) / total))

    try:
        host.stream(
            [
                "qemu-img",
                "convert",
                "-p",
                "-f",
                disk["source_format"],
                "-O",
                DISK_EXTENSION,
                "-o",
                f"subformat=streamOptimized,adapter_type={adapter}",
                disk["source"],
                part,
            ],
            on_output=on_output,
            check_abort=check_abort,
        )
    except BaseException:
        host.files.run(["rm", "-f", "--", part], timeout=60)
        raise
    # The final name appears only once the disk is complete: what a resume relies on.
    host.run(["mv", "-f", "--", part, disk["target"]], timeout=60)


def _write_descriptor(
    host: ExportHost, *, vm: VirtualMachine, disks: list[dict], directory: str, name: str, check_abort
) -> list[str]:
    """Write ``<name>.ovf`` and its SHA256 manifest ``<name>.mf``; returns the OVA's members in
    OVF's order: the descriptor, then the manifest, then the disks."""
    ovf_name, mf_name = f"{name}.ovf", f"{name}.mf"
    host.write(f"{directory}/{ovf_name}", build_ovf(vm=vm, disks=disks).encode())
    members = [ovf_name] + [d["file"] for d in disks]
    sums = _checksums(host, directory, members, check_abort)
    host.write(f"{directory}/{mf_name}", "".join(f"SHA256({m})= {sums[m]}\n" for m in members).encode())
    members.insert(1, mf_name)
    return members


def _pack(
    host: ExportHost,
    *,
    directory: str,
    ova: str,
    members: list[str],
    progress: Callable[..., None],
    check_abort: Callable[[], None],
) -> str:
    """Tar ``members`` into ``ova`` through ``<ova>.part`` (progress 90-99); returns the tar format."""
    sizes = [_size(host, f"{directory}/{m}") for m in members]
    tar_format = "ustar" if max(sizes) <= USTAR_MAX else "posix"
    records = sum(sizes) // TAR_RECORD + len(members) + 1

    def on_tar(line: bytes) -> None:
        match = TAR_PROGRESS.search(line)
        if match:
            progress(90 + int(9 * min(1.0, int(match.group(1)) / records)))

    try:
        # The descriptor first, then the manifest, then the disks (OVF's order).
        host.stream(
            [
                "tar",
                f"--format={tar_format}",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                f"--checkpoint={TAR_CHECKPOINT}",
                "--checkpoint-action=echo=%u",
                "-cf",
                f"{ova}.part",
                "-C",
                directory,
                "--",
                *members,
            ],
            on_output=on_tar,
            check_abort=check_abort,
        )
        host.run(["mv", "-f", "--", f"{ova}.part", ova], timeout=60)
    except BaseException:
        host.files.run(["rm", "-f", "--", f"{ova}.part"], timeout=60)
        raise
    return tar_format


def _checksums(host: ExportHost, directory: str, members: list[str], check_abort) -> dict[str, str]:
    sums: dict[str, str] = {}

    def on_output(line: bytes) -> None:
        digest, _sep, name = line.decode("utf-8", "replace").strip().partition("  ")
        if re.fullmatch(r"[0-9a-f]{64}", digest):
            sums[PurePosixPath(name).name] = digest

    host.stream(
        ["sha256sum", "--", *[f"{directory}/{m}" for m in members]], on_output=on_output, check_abort=check_abort
    )
    missing = [m for m in members if m not in sums]
    if missing:
        raise ExportError(_("No checksum for %(f)s.") % {"f": ", ".join(missing)})
    return sums


def export_partial_note(job: Job) -> str:
    """What the log says when an export stops before its end: where the partial work is."""
    return _(
        "Partial export kept in %(dir)s: resume job #%(id)s to finish it (converted disks are kept), or delete "
        "that directory."
    ) % {"dir": job.params.get("directory", "?"), "id": job.pk}
