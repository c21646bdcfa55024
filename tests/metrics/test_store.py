"""Bounded storage: each object's rows live in fixed ring slots per tier, the coarser tiers
hold means of the finer samples."""

import pytest

from ovmweb.metrics import series
from ovmweb.metrics.models import Sample
from ovmweb.metrics.store import Store

pytestmark = pytest.mark.django_db

HOUR, DAY = series.TIERS[0], series.TIERS[1]


def test_rows_per_object_stay_bounded_however_long_it_runs():
    store = Store(tiers=(series.Tier(0, 10, 6), series.Tier(1, 60, 3)))
    for n in range(100):  # 1000 s: the 6 fine slots wrapped many times, the 3 coarse ones too
        store.record(series.VM, 1000 + n * 10, {7: {"cpu": float(n)}})
    rows = Sample.objects.filter(kind=series.VM, object_id=7)
    assert rows.filter(tier=0).count() == 6
    assert rows.filter(tier=1).count() == 3
    # The ring holds the newest minute of the fine tier.
    assert sorted(rows.filter(tier=0).values_list("cpu", flat=True)) == [94.0, 95.0, 96.0, 97.0, 98.0, 99.0]


def test_a_coarser_slot_is_the_mean_of_its_interval_written_when_it_ends():
    store = Store()
    start = 1_800_000_000 - 1_800_000_000 % 600  # a 10-minute boundary
    for n, value in enumerate([10.0, 20.0, 30.0, 40.0, 50.0, 60.0]):
        store.record(series.SERVER, start + n * 10, {3: {"cpu": value, "mem_free": None}})
    assert not Sample.objects.filter(tier=1).exists()  # the minute is still under way
    store.record(series.SERVER, start + 60, {3: {"cpu": 0.0}})
    minute = Sample.objects.get(kind=series.SERVER, object_id=3, tier=1)
    assert (minute.ts, minute.cpu, minute.mem_free) == (start, 35.0, None)
    assert minute.slot == DAY.slot(start)


def test_a_mean_of_an_object_no_longer_sampled_is_written_too():
    store = Store()
    start = 1_800_000_000 - 1_800_000_000 % 600
    store.record(series.VM, start, {1: {"cpu": 5.0}, 2: {"cpu": 7.0}})
    store.record(series.VM, start + 60, {1: {"cpu": 5.0}})  # VM 2 stopped
    assert Sample.objects.get(kind=series.VM, object_id=2, tier=1).cpu == 7.0


def test_the_tiers_are_an_hour_a_day_and_a_month():
    assert [(t.step, t.span) for t in series.TIERS] == [(10, 3600), (60, 86400), (600, 30 * 86400)]
    assert series.ROWS_PER_OBJECT == 360 + 1440 + 4320
