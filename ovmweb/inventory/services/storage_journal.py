"""The journal of volumes a storage job creates, so that no fault leaves one behind.

Invariants:

- A job writes a volume into its journal (``Job.result["journal"]``, on the job row,
  committed at once) *before* it asks a server to create it, and takes it out once a
  ``VirtualDisk`` records it (or the job deleted it again).
- A volume in the journal of a job that is over (failed, aborted, interrupted by a dead
  worker) is deleted, unless a ``VirtualDisk`` records it by then. A server that cannot be
  reached keeps its entries in the journal; the next sweep (``journal_sweep_all``: when a
  worker recovers interrupted jobs, and before each new storage job) tries again.
- A journaled volume is never deleted while its job runs, and a volume no journal names is
  never deleted here: the journal is the only thing the sweep trusts.
- A live migration with storage is special: its target volumes are journaled under their
  final names, which the source's records share; whether they may go depends on where the
  guest runs, so its entries are resolved by ``operations.vm_migration`` (asking libvirt),
  not swept blindly (``RESOLVERS``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import transaction
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict, DriverError
from ovmweb.jobs.choices import JobStatus
from ovmweb.jobs.models import Job
from ovmweb.jobs.services import event_record

from ..models import IsoFile, Repository, VirtualDisk
from .repositories import pool_name

log = logging.getLogger(__name__)

KEY = "journal"
# Tries per journaled volume and sweep (a transient fault passes; a lasting one waits for the next sweep).
DELETE_ATTEMPTS = 2
# operation -> resolver(job) for the operations whose journal needs more than a sweep.
RESOLVERS: dict[str, Callable[[Job], None]] = {}


def _write(job: Job, entries: list[dict]) -> None:
    with transaction.atomic():
        row = Job.objects.select_for_update().get(pk=job.pk)
        result = dict(row.result or {})
        if entries:
            result[KEY] = entries
        else:
            result.pop(KEY, None)
        Job.objects.filter(pk=job.pk).update(result=result)
    job.result = result


def entries(job: Job) -> list[dict]:
    return list((Job.objects.filter(pk=job.pk).values_list("result", flat=True).first() or {}).get(KEY, []))


def _same(entry: dict, repository_id: int, volume: str) -> bool:
    return entry["repository_id"] == repository_id and entry["volume"] == volume


def journal_add(job: Job | None, *, repository: Repository, volume: str, **extra) -> None:
    """Before creating ``volume`` in ``repository``'s disks pool for ``job`` (or, after the
    commit point of a job that replaces a volume, the old one it will delete). ``extra``:
    ``part`` ("isos" for an ISO), ``owned`` (a copy the job records but that is deleted
    with its record unless a VM uses it by the job's end), ``base_id`` (a thin-clone base
    to release once the volume is gone), and whatever an operation's resolver needs."""
    if job is None:
        return
    current = entries(job)
    if not any(_same(e, repository.pk, volume) for e in current):
        _write(job, [*current, {"repository_id": repository.pk, "volume": volume, **extra}])


def journal_remove(job: Job | None, *, repository: Repository | None = None, volume: str | None = None) -> None:
    """``volume`` is recorded (or deleted): out of the journal. No arguments: all of it."""
    if job is None:
        return
    current = entries(job)
    if repository is None:
        kept = []
    else:
        kept = [e for e in current if not _same(e, repository.pk, volume)]
    if kept != current:
        _write(job, kept)


def _claimed(entry: dict, repository: Repository) -> bool:
    """Whether a record keeps the journaled volume: an ISO's, or a disk's that is not the
    job's own unfinished copy (``owned``: a copy no VM uses yet, made by the job)."""
    if entry.get("part") == "isos":
        return IsoFile.objects.filter(repository=repository, name=entry["volume"]).exists() and not entry.get("owned")
    disk = VirtualDisk.objects.filter(repository=repository, volume=entry["volume"]).first()
    if disk is None:
        return False
    return not entry.get("owned") or disk.slots.exists() or disk.thin_clones.exists()


def _delete(entry: dict) -> bool:
    """Delete one journaled volume unless a record keeps it; True when it is settled."""
    from .disk_copies import bases_release
    from .storage import disk_forget, repository_driver

    repository = Repository.objects.filter(pk=entry["repository_id"]).first()
    if repository is None or _claimed(entry, repository):
        return True
    part = entry.get("part", "disks")
    for attempt in range(DELETE_ATTEMPTS):
        try:
            repository_driver(repository).volume_delete(pool_name(repository, part), entry["volume"])
            break
        except (DriverError, Conflict) as exc:
            # A dropped connection is opened again by the next call: one more try now.
            if attempt + 1 == DELETE_ATTEMPTS:
                log.warning("journaled volume %s in %s not deleted yet: %s", entry["volume"], repository.name, exc)
                return False
    if part == "isos":
        IsoFile.objects.filter(repository=repository, name=entry["volume"]).delete()
        return True
    disk = VirtualDisk.objects.filter(repository=repository, volume=entry["volume"]).select_related("backing_disk")
    disk = disk.first()
    base_id = entry.get("base_id")
    if disk is not None:
        base_id = disk.backing_disk_id
        disk_forget(disk=disk)
    if base_id:
        bases_release(base=VirtualDisk.objects.filter(pk=base_id).first())
    return True


def journal_sweep(job: Job) -> list[dict]:
    """Delete what ``job``'s journal still names and no record claims; return what stays
    (its server could not be reached)."""
    left = [e for e in entries(job) if not _delete(e)]
    _write(job, left)
    if not left:
        return []
    event_record(
        obj=job.target,
        type="storage.cleanup_pending",
        job=job,
        text=_("%(n)d volume(s) left by job #%(id)s could not be deleted yet; they will be on the next try.")
        % {"n": len(left), "id": job.pk},
    )
    return left


def journal_settle(job: Job) -> None:
    """Settle an ended job's journal: its operation's resolver, else a sweep."""
    resolver = RESOLVERS.get(job.operation)
    if resolver is not None:
        resolver(job)
    else:
        journal_sweep(job)


def journal_sweep_all() -> int:
    """Settle the journal of every job that is over; returns how many jobs had one."""
    done = Job.objects.filter(status__in=list(JobStatus.DONE), result__has_key=KEY).order_by("pk")
    count = 0
    for job in done:
        count += 1
        try:
            journal_settle(job)
        except Exception:  # one job's leftovers never stop another's
            log.warning("journal of job #%s not settled", job.pk, exc_info=True)
    return count
