"""Reading samples: one object's series over a range, and the sparklines of a table.

The caller has checked that the user may view the objects (``permissions`` through the
API views and pages): these functions take ids, not users.
"""

from __future__ import annotations

import time

from .models import Sample
from .series import RANGES, SERIES, TIERS, names

SPARK_TIER = TIERS[0]  # the finest step
SPARK_SPAN = 900  # seconds a sparkline shows (90 points)
SPARK_SERIES = {"vm": "cpu", "server": "cpu"}


def object_series(kind: int, object_id: int, range_name: str, *, since: int | None = None, now: float | None = None):
    """``{"range", "step", "series": [{name, unit, label}], "timestamps": [...], "values": {name: [...]}}``
    of one object over ``range_name`` (hour, day, month), oldest first; ``since`` keeps only later points."""
    tier = RANGES[range_name]
    start = int(now if now is not None else time.time()) - tier.span
    if since is not None:
        start = max(start, since + 1)
    columns = names(kind)
    rows = (
        Sample.objects.filter(kind=kind, object_id=object_id, tier=tier.index, ts__gte=start)
        .order_by("ts")
        .values_list("ts", *columns)
    )
    timestamps, values = [], {name: [] for name in columns}
    for ts, *figures in rows:
        timestamps.append(ts)
        for name, figure in zip(columns, figures, strict=True):
            values[name].append(figure)
    return {
        "range": range_name,
        "step": tier.step,
        "series": [{"name": name, "unit": unit, "label": str(label)} for name, unit, label in SERIES[kind]],
        "timestamps": timestamps,
        "values": values,
    }


def sparklines(kind: int, column: str, object_ids: list[int], *, now: float | None = None) -> dict[int, list]:
    """{object id: [value, ...]} of ``column`` over the last ``SPARK_SPAN`` seconds, oldest first, in one query."""
    start = int(now if now is not None else time.time()) - SPARK_SPAN
    found: dict[int, list] = {pk: [] for pk in object_ids}
    rows = (
        Sample.objects.filter(kind=kind, object_id__in=object_ids, tier=SPARK_TIER.index, ts__gte=start)
        .order_by("object_id", "ts")
        .values_list("object_id", column)
    )
    for object_id, value in rows:
        found[object_id].append(value)
    return found
