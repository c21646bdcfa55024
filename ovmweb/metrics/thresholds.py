"""Threshold rules: a repository above ``OVMWEB_METRICS_REPOSITORY_FULL_PCT`` percent full
(sparse disks can overfill a repository, seed 7.6) and a server whose free memory fell
below ``OVMWEB_METRICS_SERVER_MEMORY_LOW_PCT`` percent raise one WARNING event each when
they cross the line, and one INFO event saying so when they are back under.

An ``Alarm`` row records that a warning stands, so crossing is told once however many
rounds stay over, and a restart of ovmweb repeats nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext_lazy as _

from ovmweb.jobs.choices import Severity
from ovmweb.jobs.services import event_record

from . import series
from .models import Alarm
from .store import Values


def repository_full(values: Values) -> bool | None:
    """Over the line, under it, or None when the figures are not known."""
    capacity, free = values.get("capacity"), values.get("free")
    if not capacity or free is None:
        return None
    return (capacity - free) * 100 / capacity > settings.OVMWEB_METRICS_REPOSITORY_FULL_PCT


def server_memory_low(values: Values) -> bool | None:
    total, free = values.get("mem_total"), values.get("mem_free")
    if not total or free is None:
        return None
    return free * 100 / total < settings.OVMWEB_METRICS_SERVER_MEMORY_LOW_PCT


@dataclass(frozen=True)
class Rule:
    name: str
    kind: int
    over: Callable[[Values], bool | None]
    raised: str  # the events' texts (lazy), formatted with the object's name and the threshold
    cleared: str


RULES = (
    Rule(
        "repository_full",
        series.REPOSITORY,
        repository_full,
        _("Repository %(name)s is over %(pct)s%% full: sparse disks may no longer be able to grow."),
        _("Repository %(name)s is back under %(pct)s%% full."),
    ),
    Rule(
        "server_memory_low",
        series.SERVER,
        server_memory_low,
        _("Server %(name)s is out of memory: under %(pct)s%% free."),
        _("Server %(name)s has memory again: over %(pct)s%% free."),
    ),
)


def _pct(rule: Rule) -> str:
    if rule.kind == series.REPOSITORY:
        return f"{settings.OVMWEB_METRICS_REPOSITORY_FULL_PCT:g}"
    return f"{settings.OVMWEB_METRICS_SERVER_MEMORY_LOW_PCT:g}"


def check(kind: int, samples: dict[int, Values], objects: dict[int, object]) -> list[tuple[str, int, bool]]:
    """Apply the rules of ``kind`` to one round of ``samples`` ({id: values}) of ``objects``
    ({id: model instance}); returns (rule, object id, raised) of every change made."""
    rules = [rule for rule in RULES if rule.kind == kind]
    if not rules or not samples:
        return []
    standing = set(Alarm.objects.filter(kind=kind, object_id__in=list(samples)).values_list("rule", "object_id"))
    changes = []
    for rule in rules:
        for object_id, values in samples.items():
            over = rule.over(values)
            if over is None or over == ((rule.name, object_id) in standing) or object_id not in objects:
                continue
            _change(rule, objects[object_id], raise_=over)
            changes.append((rule.name, object_id, over))
    return changes


@transaction.atomic
def _change(rule: Rule, obj, *, raise_: bool) -> None:
    text = str(rule.raised if raise_ else rule.cleared) % {"name": obj, "pct": _pct(rule)}
    if raise_:
        Alarm.objects.create(kind=rule.kind, object_id=obj.pk, rule=rule.name)
        event_record(obj=obj, type=f"metrics.{rule.name}", text=text, severity=Severity.WARNING)
    else:
        Alarm.objects.filter(kind=rule.kind, object_id=obj.pk, rule=rule.name).delete()
        event_record(obj=obj, type=f"metrics.{rule.name}.cleared", text=text, severity=Severity.INFO)
