"""Helpers for everyone's tests."""

from __future__ import annotations

from .choices import JobStatus
from .models import Job
from .runner import run_job


def run_pending_jobs(*, max_rounds: int = 100) -> int:
    """Run every QUEUED job synchronously, in this process, through the real
    runner; jobs submitted by the jobs that ran (children) run too. Returns
    how many jobs ran."""
    ran = 0
    for _round in range(max_rounds):
        ids = list(Job.objects.filter(status=JobStatus.QUEUED).order_by("pk").values_list("pk", flat=True))
        if not ids:
            break
        for job_id in ids:
            if run_job(job_id) is not None:
                ran += 1
    return ran
