"""Actions on several virtual machines in one request (seed 7.7; issue 13's bulk actions).

Invariants:

- One request makes one parent job (``vm.bulk``) and one child job per VM, each the job
  the single-VM action makes (same rules, same locks), each VM checked against the
  user's permission first; a VM the action is refused for gets a child that fails with
  the reason, so the parent says which VM failed and why.
- Migrations run one after another (seed 7.7: "performed serially and not
  concurrently"): each migration child waits for the one before it (``wait_for_turn``)
  by going back to the queue, holding no worker meanwhile. The other actions run at once.
"""

from __future__ import annotations

from ovmweb.jobs.choices import JobStatus
from ovmweb.jobs.models import Job
from ovmweb.jobs.registry import JobContext, JobDeferred

# Seconds a serial child waits before it looks again at the child before it.
TURN_POLL_S = 1.0


def wait_for_turn(ctx: JobContext, after_job_id: int | None) -> None:
    """Return when job ``after_job_id`` (the previous migration of a bulk) is over; until
    then give the worker back (the job is queued again, its locks kept)."""
    if after_job_id is None:
        return
    if Job.objects.filter(pk=after_job_id, status__in=list(JobStatus.LIVE)).exists():
        raise JobDeferred(TURN_POLL_S)
