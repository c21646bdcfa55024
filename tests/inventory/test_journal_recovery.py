"""A storage job whose worker was killed (SIGKILL: the job stays RUNNING) leaves nothing behind
once a new worker starts: recovery fails the job and settles its journal (what
bench/storage_faults.py checks on the real hypervisor, here without one)."""

import pytest
from django.db import transaction

from ovmweb.errors import ConnectionFailed
from ovmweb.inventory.services import storage
from ovmweb.inventory.services.repositories import pool_name
from ovmweb.inventory.services.storage_journal import KEY, entries
from ovmweb.jobs.choices import JobStatus
from ovmweb.jobs.models import Job, ObjectLock
from ovmweb.jobs.recovery import INTERRUPTED, recover_interrupted_jobs
from ovmweb.jobs.services import job_submit
from tests import factories as f

pytestmark = pytest.mark.django_db


class Driver:
    """Records deletions; ``down`` times the server cannot be reached first."""

    def __init__(self, down: int = 0):
        self.deleted, self.down = [], down

    def volume_delete(self, pool: str, volume: str) -> None:
        if self.down:
            self.down -= 1
            raise ConnectionFailed("server unreachable")
        self.deleted.append((pool, volume))


@pytest.fixture
def driver(monkeypatch):
    import ovmweb.inventory.operations  # noqa: F401  (connects job_interrupted's receivers, as a worker's autodiscover does)

    d = Driver()
    monkeypatch.setattr(storage, "repository_driver", lambda repository: d)
    return d


def _killed_job(vm, journal: list[dict]) -> Job:
    """A clone job its worker died in: RUNNING, its lock held, its journal as written."""
    with transaction.atomic():
        job = job_submit(operation="vm.clone", summary="clone", target=vm, lock=[vm], params={"source_vm_id": vm.pk})
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, result={KEY: journal})
    return job


def test_recovery_deletes_what_a_killed_job_was_making_and_releases_its_lock(vm, repo, driver):
    job = _killed_job(vm, [{"repository_id": repo.pk, "volume": "half-made.qcow2", "owned": True}])

    recover_interrupted_jobs()

    job.refresh_from_db()
    assert (job.status, job.error) == (JobStatus.FAILURE, INTERRUPTED)
    assert driver.deleted == [(pool_name(repo, "disks"), "half-made.qcow2")]
    assert entries(job) == []
    assert not ObjectLock.objects.filter(job=job).exists()


def test_recovery_keeps_a_volume_a_record_claims(vm, repo, driver):
    # Killed after the copy was recorded and attached to the clone's slot: it is the clone's disk now.
    disk = f.VirtualDiskFactory(repository=repo)
    f.VmDiskSlotFactory(vm=vm, virtual_disk=disk)
    job = _killed_job(vm, [{"repository_id": repo.pk, "volume": disk.volume, "owned": True}])

    recover_interrupted_jobs()

    assert driver.deleted == []
    assert entries(job) == []


def test_an_unreachable_server_keeps_the_entry_for_the_next_sweep(vm, repo, driver):
    from ovmweb.inventory.services.storage_journal import journal_sweep_all

    driver.down = 2  # both tries of this sweep fail
    job = _killed_job(vm, [{"repository_id": repo.pk, "volume": "half-made.qcow2"}])

    recover_interrupted_jobs()
    assert driver.deleted == [] and len(entries(job)) == 1

    journal_sweep_all()
    assert driver.deleted == [(pool_name(repo, "disks"), "half-made.qcow2")]
    assert entries(job) == []
