"""Job operations of virtual appliances: import (OVA / OVF + disks) and deploy (a VM's disks)."""

from __future__ import annotations

import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from django.utils.translation import gettext as _

from ovmweb.jobs.registry import JobContext, operation

from ..models import Repository, VirtualAppliance, VirtualDisk
from ..services import appliances
from ..services.vms import vm_slot_set_disk

FETCH_TIMEOUT = 30


def _fetch(url: str, path: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as response, open(path, "wb") as out:
            shutil.copyfileobj(response, out, 1024 * 1024)
    except urllib.error.HTTPError as exc:
        raise appliances.ApplianceError(_("%(url)s answered HTTP %(code)s.") % {"url": url, "code": exc.code}) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise appliances.ApplianceError(
            _("Cannot fetch %(url)s: %(e)s") % {"url": url, "e": getattr(exc, "reason", exc)}
        ) from exc


@operation("appliance.import")
def appliance_import(
    ctx: JobContext, *, repository_id: int, name: str, staged: str | None = None, url: str | None = None
) -> dict:
    repository = Repository.objects.get(pk=repository_id)
    work = Path(tempfile.mkdtemp(prefix="appliance-", dir=appliances.staging_dir()))
    try:
        if url and not url.lower().split("?", 1)[0].endswith(".ova"):
            descriptor = appliances.fetch_ovf_tree(url, work, _fetch)
        else:
            ova = Path(staged) if staged else work / "appliance.ova"
            if url:
                _fetch(url, ova)
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
