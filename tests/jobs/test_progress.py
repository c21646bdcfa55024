"""Progress and log writes of a running job: only what changes is written."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from ovmweb.jobs.models import Job
from ovmweb.jobs.registry import JobContext
from ovmweb.jobs.services import job_submit

pytestmark = pytest.mark.django_db


def _ctx(vm) -> JobContext:
    with transaction.atomic():
        job = job_submit(operation="test.noop", summary="progress", target=vm, lock=[vm])
    return JobContext(Job.objects.get(pk=job.pk))


def test_a_progress_call_that_changes_nothing_writes_nothing(vm):
    ctx = _ctx(vm)
    ctx.progress(40)
    with CaptureQueriesContext(connection) as queries:
        for _ in range(50):  # e.g. a copy reporting every chunk of one percent
            ctx.progress(40)
        ctx.progress(39)
    assert len(queries) == 0
    ctx.progress(41)
    assert Job.objects.get(pk=ctx.job.pk).progress == 41


def test_log_stays_whole_and_in_order_past_the_rewrite_limit(vm):
    ctx = _ctx(vm)
    lines = [f"line {i} " + "x" * 200 for i in range(120)]  # ~25 kB: crosses the limit
    for i, line in enumerate(lines):
        if i % 2:
            ctx.log(line)
        else:
            ctx.progress(min(100, i), line)
    log = Job.objects.get(pk=ctx.job.pk).log
    assert log == ctx.job.log
    assert [row.split(" ", 1)[1] for row in log.splitlines()] == lines


def test_children_reporting_into_a_parent_never_move_its_progress_back(vm):
    ctx = _ctx(vm)
    ctx.submit_child(operation="test.noop", summary="child", target=vm)
    Job.objects.filter(pk=ctx.job.pk).update(progress=70)  # what maybe_finish_parent writes
    ctx.progress(30, "parent step")
    job = Job.objects.get(pk=ctx.job.pk)
    assert job.progress == 70 and "parent step" in job.log
