"""Writes for jobs, object locks and events. Every job is created here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict, LockConflict

from . import live
from .choices import JobStatus, Severity
from .models import Event, Job, ObjectLock

# A conflicting lock whose holder vanished between our failed INSERT and the
# look-up of the holder is retried this many times before giving up.
_LOCK_ATTEMPTS = 3


def _object_key(obj: models.Model) -> tuple[int, int]:
    return ContentType.objects.get_for_model(obj, for_concrete_model=True).pk, obj.pk


def _ancestor_ids(job: Job) -> set[int]:
    ids: set[int] = set()
    parent = job.parent
    while parent is not None:
        ids.add(parent.pk)
        parent = parent.parent
    return ids


def _locks_acquire(*, job: Job, objects: Iterable[models.Model]) -> None:
    """Take one ObjectLock per object for `job`, or raise LockConflict naming the holder.

    The unique constraint on (content_type, object_id) decides between
    concurrent submissions: there is no read-then-write window. A child job
    does not need a lock its ancestor already holds (the parent changes the
    object through its children).
    """
    keys: dict[tuple[int, int], models.Model] = {}
    for obj in objects:
        if obj is None or obj.pk is None:
            continue
        keys.setdefault(_object_key(obj), obj)
    if not keys:
        return
    ancestors = _ancestor_ids(job) if job.parent_id else set()
    if ancestors:
        held = ObjectLock.objects.filter(_keys_q(keys), job_id__in=ancestors).values_list(
            "content_type_id", "object_id"
        )
        for key in held:
            keys.pop(tuple(key), None)
        if not keys:
            return
    for _attempt in range(_LOCK_ATTEMPTS):
        try:
            with transaction.atomic():
                ObjectLock.objects.bulk_create(
                    [ObjectLock(content_type_id=ct, object_id=oid, job=job) for ct, oid in keys]
                )
            return
        except IntegrityError:
            holder = (
                ObjectLock.objects.filter(_keys_q(keys)).exclude(job=job).select_related("job").order_by("pk").first()
            )
            if holder is None:
                continue  # the holder finished in between: try again
            obj = keys.get((holder.content_type_id, holder.object_id))
            exc = LockConflict(
                _("%(object)s is locked by job #%(job_id)s (%(summary)s); try again when it has finished.")
                % {"object": obj, "job_id": holder.job_id, "summary": holder.job.summary}
            )
            exc.holder_job_id = holder.job_id
            exc.holder_summary = holder.job.summary
            raise exc from None
    raise LockConflict(_("%(object)s is locked by another job.") % {"object": next(iter(keys.values()))})


def _keys_q(keys: Iterable[tuple[int, int]]) -> Q:
    q = Q()
    for ct, oid in keys:
        q |= Q(content_type_id=ct, object_id=oid)
    return q


def locks_release(*, job: Job) -> int:
    """Drop every lock `job` holds (called when it ends, whatever the outcome)."""
    deleted, _ = ObjectLock.objects.filter(job=job).delete()
    return deleted


def job_submit(
    *,
    operation: str,
    summary: str,
    user=None,
    target: models.Model | None = None,
    params: dict[str, Any] | None = None,
    lock: Iterable[models.Model] = (),
    parent: Job | None = None,
) -> Job:
    """Create a QUEUED job holding locks on `lock`, and queue it for the worker.

    Call inside the caller's transaction: if it rolls back, neither the job,
    its locks nor its task exist.
    """
    with transaction.atomic():
        job = Job(
            operation=operation,
            summary=str(summary)[:255],
            user=user if user is not None and getattr(user, "is_authenticated", False) else None,
            params=params or {},
            parent=parent,
        )
        if target is not None:
            job.target_type = ContentType.objects.get_for_model(target, for_concrete_model=True)
            job.target_id = target.pk
            job.target_name = str(target)[:255]
        # The foreign keys are instances we were handed: re-validating them
        # would only re-read rows that exist.
        job.full_clean(exclude=["user", "parent", "target_type"])
        job.save()
        _locks_acquire(job=job, objects=lock)
        from .tasks import enqueue_job

        enqueue_job(job)
        live.publish("job", live.job_payload(job))
    return job


def job_finish(*, job: Job, status: str, error: str = "", result: dict | None = None) -> Job:
    """End `job` with `status` (a DONE status): release its locks, publish it."""
    if status not in JobStatus.DONE:
        raise ValueError(f"{status} is not a final job status")
    # No savepoint: callers end jobs inside their own transaction, all or nothing.
    with transaction.atomic(savepoint=False):
        job.status = status
        job.finished_at = timezone.now()
        job.error = error
        if status == JobStatus.SUCCESS:
            job.progress = 100
        if result is not None:
            job.result = result
        job.save(update_fields=["status", "finished_at", "error", "progress", "result"])
        locks_release(job=job)
        live.publish("job", live.job_payload(job))
    return job


def job_request_abort(*, job: Job, user) -> Job:
    """Ask a job (and its children) to stop. A QUEUED job is aborted at once;
    a RUNNING one stops at its next step boundary (JobContext.check_abort)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.status in JobStatus.DONE:
            raise Conflict(
                _("Job #%(id)s has already finished (%(status)s).") % {"id": job.pk, "status": job.get_status_display()}
            )
        job.abort_requested = True
        job.save(update_fields=["abort_requested"])
        if job.status == JobStatus.QUEUED:
            job_finish(job=job, status=JobStatus.ABORTED, error=str(_("Aborted before it started.")))
            if job.parent_id:
                # A parent waiting for its children ends when its last child does.
                from .runner import maybe_finish_parent

                parent_id = job.parent_id
                transaction.on_commit(lambda: maybe_finish_parent(parent_id))
        else:
            live.publish("job", live.job_payload(job))
        event_record(
            obj=job.target,
            type="job.abort",
            text=_("Abort of job #%(id)s (%(summary)s) requested.") % {"id": job.pk, "summary": job.summary},
            severity=Severity.WARNING,
            user=user,
            job=job,
        )
        for child in job.children.filter(status__in=JobStatus.LIVE):
            job_request_abort(job=child, user=user)
    return job


def event_record(
    *,
    obj: models.Model | None,
    type: str,
    text: str,
    severity: str = Severity.INFO,
    user=None,
    job: Job | None = None,
) -> Event:
    """Record that something happened to `obj`, and publish it once committed."""
    event = Event(type=type, text=str(text), severity=severity, job=job)
    if obj is not None:
        event.content_type = ContentType.objects.get_for_model(obj, for_concrete_model=True)
        event.object_id = obj.pk
        event.object_repr = str(obj)[:255]
    if user is not None and getattr(user, "is_authenticated", False):
        event.user = user
    event.full_clean(exclude=["content_type", "user", "job", "acknowledged_by"])
    event.save()
    live.publish("event", live.event_payload(event))
    return event


def event_acknowledge(*, event: Event, user) -> Event:
    """Mark an event as seen by `user` (acknowledging twice keeps the first acknowledger)."""
    with transaction.atomic():
        event = Event.objects.select_for_update().get(pk=event.pk)
        if not event.acknowledged:
            event.acknowledged = True
            event.acknowledged_by = user if getattr(user, "is_authenticated", False) else None
            event.save(update_fields=["acknowledged", "acknowledged_by"])
            live.publish("event", live.event_payload(event))
    return event
