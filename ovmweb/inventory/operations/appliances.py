"""Job operations of virtual appliances: import (OVA / OVF + disks) and deploy (a VM's disks)."""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from django.utils.translation import gettext as _

from ovmweb.jobs.registry import JobContext, operation

from ..models import Repository, VirtualAppliance, VirtualDisk
from ..services import appliances, fetch
from ..services.vm_devices import vm_slot_set_disk


def _fetch(url: str, path: Path, check_abort: Callable[[], None] | None = None) -> None:
    """``url`` into ``path`` under the import rules of fetch.py (each disk URL an OVF names
    is checked like the descriptor's); a partial file is removed."""
    try:
        fetch.fetch_to_file(url, path, check_abort=check_abort, schemes={"http", "https"})
    except (fetch.FetchError, OSError) as exc:
        raise appliances.ApplianceError(_("Cannot fetch %(url)s: %(e)s") % {"url": url, "e": exc}) from exc


@operation("appliance.import")
def appliance_import(
    ctx: JobContext, *, repository_id: int, name: str, staged: str | None = None, url: str | None = None
) -> dict:
    repository = Repository.objects.get(pk=repository_id)
    work = Path(tempfile.mkdtemp(prefix="appliance-", dir=appliances.staging_dir()))
    try:
        fetch_one = functools.partial(_fetch, check_abort=ctx.check_abort)
        if url and not url.lower().split("?", 1)[0].endswith(".ova"):
            descriptor = appliances.fetch_ovf_tree(url, work, fetch_one)
        else:
            ova = Path(staged) if staged else work / "appliance.ova"
            if url:
                fetch_one(url, ova)
            descriptor = appliances.unpack_ova(ova, work)
        ctx.progress(30, _("Descriptor %(f)s read.") % {"f": descriptor.name})
        appliance = appliances.appliance_store(
            repository=repository,
            name=name,
            descriptor=descriptor,
            job=ctx.job,
            progress=lambda done, total: ctx.progress(30 + int(65 * done / total)),
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if staged:
            Path(staged).unlink(missing_ok=True)
    return {
        "appliance_id": appliance.pk,
        "vms": list(appliance.vms.values_list("name", flat=True)),
        "path": appliances.assembly_directory(appliance),
    }


@operation("appliance.deploy")
def appliance_deploy(
    ctx: JobContext, *, vm_id: int, appliance_id: int, target_repository_id: int, disks: list[dict]
) -> dict:
    """Copy each disk of the appliance VM into the new VM's slots (the VM stays STOPPED)."""
    from ..models import VirtualMachine

    vm = VirtualMachine.objects.get(pk=vm_id)
    appliance = VirtualAppliance.objects.select_related("repository").get(pk=appliance_id)
    target = Repository.objects.get(pk=target_repository_id)
    copied = []
    for index, item in enumerate(disks):
        ctx.check_abort()
        disk = VirtualDisk.objects.get(pk=item["disk_id"])
        copy = appliances.appliance_disk_copy(
            disk=disk, appliance=appliance, target_repository=target, name=f"{vm.name}-{item['slot']}", job=ctx.job
        )
        vm_slot_set_disk(vm=vm, slot=item["slot"], disk=copy, bus=item["bus"], job=ctx.job)
        copied.append(copy.pk)
        ctx.progress(int(100 * (index + 1) / max(len(disks), 1)), _("Disk %(n)d copied.") % {"n": index + 1})
    return {"vm_id": vm.pk, "disk_ids": copied}


@operation("appliance.delete")
def appliance_delete(ctx: JobContext, *, appliance_id: int) -> dict:
    appliance = VirtualAppliance.objects.select_related("repository").get(pk=appliance_id)
    appliances.appliance_remove(appliance=appliance, job=ctx.job)
    return {"deleted": appliance_id}
