"""Writing samples: the finest tier as they come, the coarser tiers as averages.

``Store.record`` upserts one row per object into tier 0 and adds the values to a running
mean per coarser tier; when a coarser slot's interval is over, its mean is upserted. So a
round writes one row per object, plus one per object and coarser tier at the end of that
tier's interval. The means live in memory: a restart loses at most the intervals under way.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection, transaction

from .models import Sample
from .series import COLUMNS, TIERS, Tier

Values = dict[str, float | None]
FIELDS = ("kind", "object_id", "tier", "slot", "ts", *COLUMNS)  # the ring key first
BATCH = 2000  # rows per executemany


class _Mean:
    __slots__ = ("bucket", "counts", "sums")

    def __init__(self, bucket: int):
        self.bucket = bucket
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: Values) -> None:
        for name, value in values.items():
            if value is not None:
                self.sums[name] = self.sums.get(name, 0.0) + value
                self.counts[name] = self.counts.get(name, 0) + 1

    def result(self) -> Values:
        return {name: total / self.counts[name] for name, total in self.sums.items()}


def upsert(rows: Iterable[tuple]) -> None:
    """Write ``rows`` (``FIELDS`` tuples) over whatever their (kind, object, tier, slot) held.

    One prepared ``INSERT ... ON CONFLICT DO UPDATE`` (SQLite and PostgreSQL alike) run
    over all rows: building one ORM statement per batch cost ten times the writing."""
    rows = list(rows)
    if not rows:
        return
    quote = connection.ops.quote_name
    updated = ", ".join(f"{quote(name)} = excluded.{quote(name)}" for name in FIELDS[4:])
    sql = (
        f"INSERT INTO {quote(Sample._meta.db_table)} ({', '.join(quote(name) for name in FIELDS)}) "  # nosec B608  # identifiers are constants through quote_name, every value a bound %s
        f"VALUES ({', '.join(['%s'] * len(FIELDS))}) "
        f"ON CONFLICT ({', '.join(quote(name) for name in FIELDS[:4])}) DO UPDATE SET {updated}"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        for start in range(0, len(rows), BATCH):
            cursor.executemany(sql, rows[start : start + BATCH])


def row(kind: int, object_id: int, tier: Tier, bucket: int, values: Values) -> tuple:
    return (kind, object_id, tier.index, tier.slot(bucket), bucket, *(values.get(name) for name in COLUMNS))


class Store:
    def __init__(self, tiers: tuple[Tier, ...] = TIERS):
        self.finest, *self.coarser = tiers
        self._means: dict[tuple[int, int, int], _Mean] = {}  # (kind, object, tier) -> mean under way
        self._current: dict[tuple[int, int], int] = {}  # (kind, tier) -> the interval under way

    def record(self, kind: int, ts: int, samples: dict[int, Values]) -> int:
        """Store one round of ``samples`` ({object id: values}) taken at ``ts``; returns the rows written."""
        rows = [
            row(kind, object_id, self.finest, self.finest.bucket(ts), values) for object_id, values in samples.items()
        ]
        for tier in self.coarser:
            rows += self._roll(kind, tier, ts, samples)
        upsert(rows)
        return len(rows)

    def _roll(self, kind: int, tier: Tier, ts: int, samples: dict[int, Values]) -> list[tuple]:
        """Add ``samples`` to the means of ``tier``; the rows of the means whose interval ended."""
        bucket = tier.bucket(ts)
        done = []
        if self._current.get((kind, tier.index)) != bucket:
            self._current[(kind, tier.index)] = bucket
            done = self._close(kind, tier, bucket)
        for object_id, values in samples.items():
            key = (kind, object_id, tier.index)
            mean = self._means.get(key)
            if mean is None:
                mean = self._means[key] = _Mean(bucket)
            mean.add(values)
        return done

    def _close(self, kind: int, tier: Tier, bucket: int) -> list[tuple]:
        """The rows of every mean of ``kind`` in ``tier`` from before ``bucket`` (its object
        sampled this round or not: a stopped VM's last minute is kept too), forgotten here."""
        rows = []
        for key, mean in list(self._means.items()):
            if key[0] == kind and key[2] == tier.index and mean.bucket != bucket:
                rows.append(row(kind, key[1], tier, mean.bucket, mean.result()))
                del self._means[key]
        return rows

    def flush(self) -> int:
        """Write every mean under way (at shutdown); returns the rows written."""
        rows = []
        tiers = {tier.index: tier for tier in self.coarser}
        for (kind, object_id, index), mean in self._means.items():
            rows.append(row(kind, object_id, tiers[index], mean.bucket, mean.result()))
        upsert(rows)
        return len(rows)

    def forget(self, kind: int, object_ids: Iterable[int]) -> None:
        gone = set(object_ids)
        for key in [k for k in self._means if k[0] == kind and k[1] in gone]:
            del self._means[key]
