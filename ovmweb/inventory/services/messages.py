"""Key/value messages sent into a guest (seed 7.10): one job per message."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from ovmweb.jobs.models import Job
from ovmweb.jobs.services import event_record, job_submit
from ovmweb.tunnels.credentials import decrypt_credentials, encrypt_credentials

from .. import rules
from ..choices import MessageResult
from ..models import VirtualMachine, VmMessage

_ALLOWED = frozenset({"key", "value", "hidden", "log"})
# Seed 7.10: the root password is always sent last (once it is set, a guest's first-boot
# scripts may act on the other keys already received). Oracle VM's templates call it
# com.oracle.linux.root-password; any key named root-password, or ending in it, counts.
ROOT_PASSWORD_KEY = "root-password"


def is_root_password(key: str) -> bool:
    return key == ROOT_PASSWORD_KEY or key.endswith("." + ROOT_PASSWORD_KEY)


def send_order(messages: list[dict]) -> list[dict]:
    """The messages in the order given, except that the root password goes last."""
    return sorted(messages, key=lambda message: is_root_password(str(message.get("key", ""))))


def vm_send_messages(*, vm: VirtualMachine, user, messages: list[dict]) -> list[Job]:
    """Validate every message first (nothing is sent if one is bad), then one job each.

    A hidden or unlogged value is never stored in clear: the message log shows
    ``********`` (hidden) or nothing (unlogged), and the job carries the value
    encrypted until the job ends, however it ends (``message_job_ended``). The jobs are
    submitted (and so run) in ``send_order``: ``root-password`` last. Only a logged, visible
    value may reach the guest agent's log."""
    if not messages:
        raise ValidationError({"messages": [_("Send at least one message.")]})
    errors: dict[str, list] = {}
    for index, message in enumerate(messages):
        unknown = set(message) - _ALLOWED
        try:
            if unknown:
                raise ValidationError({k: [_("Unknown field.")] for k in sorted(unknown)})
            rules.check_message(
                key=message.get("key", ""), value=message.get("value", ""), log=message.get("log", True)
            )
        except ValidationError as exc:
            for field, msgs in exc.message_dict.items():
                errors.setdefault(f"messages[{index}].{field}", []).extend(msgs)
    if errors:
        raise ValidationError(errors)
    jobs = []
    with transaction.atomic():
        vm = VirtualMachine.objects.select_for_update().get(pk=vm.pk)
        rules.check_message_target(vm)
        for message in send_order(messages):
            hidden, log = bool(message.get("hidden", False)), bool(message.get("log", True))
            value = message.get("value", "")
            stored = rules.HIDDEN_VALUE if hidden else (value if log else "")
            row = VmMessage(vm=vm, key=message["key"], value=stored, hidden=hidden, logged=log, user=user)
            row.full_clean(exclude=["job", "user"])
            row.save()
            params = {"vm_id": vm.pk, "message_id": row.pk, "key": row.key}
            if hidden or not log:
                params["value_encrypted"] = encrypt_credentials({"value": value})
            else:
                params["value"], params["log"] = value, True
            # Messages to one VM go one after another (QEMU serves one client on the
            # channel), so they are not locked against each other: the worker runs them in order.
            job = job_submit(
                operation="vm.message",
                user=user,
                target=vm,
                params=params,
                summary=_("Send message %(key)s to %(vm)s") % {"key": row.key[:64], "vm": vm.name},
            )
            row.job = job
            row.save(update_fields=["job"])
            jobs.append(job)
        event_record(
            obj=vm,
            type="vm.message",
            user=user,
            text=_("%(n)d message(s) queued for %(vm)s.") % {"n": len(messages), "vm": vm.name},
        )
    return jobs


def message_value(params: dict) -> str:
    """The value a vm.message job must deliver (decrypting a hidden one)."""
    if "value_encrypted" in params:
        return decrypt_credentials(params["value_encrypted"]).get("value", "")
    return params.get("value", "")


_VALUE_PARAMS = ("value", "value_encrypted")


def _scrub(job: Job) -> None:
    if not any(k in job.params for k in _VALUE_PARAMS):
        return
    params = {k: v for k, v in job.params.items() if k not in _VALUE_PARAMS}
    Job.objects.filter(pk=job.pk).update(params=params)
    job.params = params


def message_finish(*, message_id: int, result: str, job: Job | None = None) -> None:
    """Record the outcome and scrub the value from the job's parameters."""
    with transaction.atomic():
        VmMessage.objects.filter(pk=message_id).update(result=MessageResult(result))
        if job is not None:
            _scrub(job)


def message_job_ended(job: Job) -> None:
    """A vm.message job reached a final status, run or not (aborted while queued, failed by
    recovery): the value leaves the database, and a message never sent is not left PENDING."""
    if job.operation != "vm.message":
        return
    with transaction.atomic():
        _scrub(job)
        VmMessage.objects.filter(job=job, result=MessageResult.PENDING).update(result=MessageResult.FAILED)
