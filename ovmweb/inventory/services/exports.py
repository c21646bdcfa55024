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
  API: ``POST /api/v1/jobs/{id}/resume/``; in code: ``vm_copies.vm_export(vm=, user=,
  resume_job=job)``.

Not exported: CD-ROM slots (the ISOs stay in the repository) and ovmweb-specific
settings without an OVF equivalent (domain type is named in the VirtualSystem's
Info, HA, pinning, keymap). virtio-blk disks are described on an LSI Logic SCSI
controller, as OVF has no virtio controller.

This module queues exports (submit, resume) and shares out the export slots;
``export_ovf`` writes the OVF descriptor, ``export_host`` runs the export on the server
(the ``vm.export`` job's work).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict
from ovmweb.jobs.choices import JobStatus
from ovmweb.jobs.models import Job, ObjectLock
from ovmweb.jobs.services import job_submit

from .. import rules
from ..choices import DiskSlotKind
from ..models import Repository, VirtualMachine
from .vm_devices import disk_path

OPERATION = "vm.export"


DISK_EXTENSION = "vmdk"


# Seconds between two looks for a free export slot.
SLOT_POLL = 1.0
# Seconds before an export that gave its worker thread back (defer) looks again.
SLOT_DEFER = 5.0


# An export holds one of MAX_CONCURRENT_EXPORTS slots for as long as it runs. A slot is
# an ObjectLock on a reserved key (job content type, object id SLOT_BASE + n; no job
# has such an id): the unique constraint decides between concurrent exports without a
# read-then-write window, and the job's locks are released when it ends, whatever the
# outcome, and by recovery after a crash.
SLOT_BASE = 1 << 62


def _stamp() -> str:
    return timezone.now().strftime("%Y%m%dT%H%M%SZ")


def _base_name(vm: VirtualMachine) -> str:
    return slugify(vm.name)[:60].strip("-_") or "vm"


def _disk_plan(vm: VirtualMachine) -> list[dict[str, Any]]:
    """Every virtual disk of the VM, in slot order. CD-ROMs (ISOs) are not exported."""
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
    *,
    job: Job,
    progress: Callable[..., None],
    check_abort: Callable[[], None],
    poll: float = SLOT_POLL,
    defer: Callable[[float], None] | None = None,
) -> None:
    """Block until ``job`` holds an export slot; says so in the job log while it waits.

    ``defer`` (JobContext.defer_if_needed) is called on every look: it re-queues the job
    when its worker thread is needed by other jobs, so waiting exports never hold every
    thread of a worker while the four running ones convert.
    """
    said = None
    while not export_slot_acquire(job=job):
        running = exports_running()
        note = _("queued: %(n)d exports running") % {"n": running}
        # A deferred export waits here again on its next run: the log already says so.
        if running != said and not job.log.rstrip().endswith(note):
            progress(0, note)
        said = running
        check_abort()
        if defer is not None:
            defer(SLOT_DEFER)
        time.sleep(poll)


def export_partial_note(job: Job) -> str:
    """What the log says when an export stops before its end: where the partial work is."""
    return _(
        "Partial export kept in %(dir)s: resume job #%(id)s to finish it (converted disks are kept), or delete "
        "that directory."
    ) % {"dir": job.params.get("directory", "?"), "id": job.pk}
