"""What the inventory cleans up when one of its jobs ends, however it ends.

``job_finish`` is the only writer of a final status; a job may reach it without
its operation ever running (aborted while queued, failed by recovery), so the
clean-up cannot live in the operations: it follows the job row instead.
"""

from __future__ import annotations

from ovmweb.jobs.choices import JobStatus

from . import staging


def job_saved(sender, instance, update_fields=None, raw=False, **kwargs) -> None:
    if raw or instance.status not in JobStatus.DONE:
        return
    if update_fields is not None and "status" not in update_fields:
        return
    from .services.messages import message_job_ended

    message_job_ended(instance)
    staging.discard_for_job(instance)


def job_deleted(sender, instance, **kwargs) -> None:
    staging.discard_for_job(instance)
