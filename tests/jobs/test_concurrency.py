"""Conflicting submissions at the same moment: the unique lock constraint decides."""

import threading
import time

import pytest
from django.db import connection, transaction

from ovmweb.errors import LockConflict
from ovmweb.jobs.models import Job, ObjectLock
from ovmweb.jobs.services import job_submit

pytestmark = pytest.mark.django_db(transaction=True)


def _race(vm, n: int):
    barrier = threading.Barrier(n)
    won: list[int] = []
    refused: list[str] = []
    errors: list[BaseException] = []

    def submit(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            with transaction.atomic():
                job = job_submit(operation="test.noop", summary=f"contender {i}", target=vm, lock=[vm])
                # Keep the transaction open so the contenders really overlap.
                time.sleep(0.2)
            won.append(job.pk)
        except LockConflict as exc:
            refused.append(str(exc))
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return won, refused


def test_two_concurrent_submissions_exactly_one_wins(vm):
    won, refused = _race(vm, 2)
    assert len(won) == 1 and len(refused) == 1
    winner = Job.objects.get()
    assert winner.pk == won[0]
    assert f"#{winner.pk}" in refused[0] and winner.summary in refused[0]
    assert ObjectLock.objects.get().job_id == winner.pk


def test_eight_concurrent_submissions_exactly_one_wins(vm):
    won, refused = _race(vm, 8)
    assert len(won) == 1 and len(refused) == 7
    assert Job.objects.count() == 1 and ObjectLock.objects.count() == 1
