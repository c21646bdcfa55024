"""Thresholds raise one WARNING when crossed and one event when back under."""

import pytest

from ovmweb.inventory.services.repositories import pool_name
from ovmweb.jobs.models import Event
from ovmweb.metrics.models import Alarm
from ovmweb.metrics.sampler import Sampler
from tests import factories as f

from .fakes import GIB, FakeSource, host, usage

pytestmark = pytest.mark.django_db


def _rounds(sampler, server, source, readings, set_reading):
    for reading in readings:
        set_reading(reading)
        sampler.sample([server])


def test_a_repository_over_85_percent_warns_once_and_clears():
    pool = f.ServerPoolFactory()
    server = f.ServerFactory(server_pool=pool)
    repository = f.RepositoryFactory(server_pools=[pool])
    source = FakeSource()
    sampler = Sampler(source=source)

    def fill(free_gib):
        source.pools[pool_name(repository)] = usage(capacity=100 * GIB, free=free_gib * GIB)

    _rounds(sampler, server, source, [20, 14, 10, 12], fill)  # 80 %, 86 %, 90 %, 88 %
    events = Event.objects.filter(object_id=repository.pk, type__startswith="metrics.repository_full")
    assert [(e.severity, e.type) for e in events] == [("WARNING", "metrics.repository_full")]
    assert Alarm.objects.filter(rule="repository_full", object_id=repository.pk).exists()
    _rounds(sampler, server, source, [16, 15], fill)  # 84 %, 85 %: back under
    events = Event.objects.filter(object_id=repository.pk, type__startswith="metrics.repository_full")
    assert [(e.severity, e.type) for e in events.order_by("id")] == [
        ("WARNING", "metrics.repository_full"),
        ("INFO", "metrics.repository_full.cleared"),
    ]
    assert "85" in events.order_by("id").last().text
    assert not Alarm.objects.exists()


def test_a_server_out_of_memory_warns_once_and_clears():
    server = f.ServerFactory()
    source = FakeSource()
    sampler = Sampler(source=source)

    def free(kib):
        source.hosts[server.pk] = host(free_kib=kib, total_kib=1000 * 1024)

    _rounds(sampler, server, source, [500 * 1024, 10 * 1024, 5 * 1024, 600 * 1024], free)
    events = Event.objects.filter(object_id=server.pk, type__startswith="metrics.server_memory_low").order_by("id")
    assert [(e.severity, e.type) for e in events] == [
        ("WARNING", "metrics.server_memory_low"),
        ("INFO", "metrics.server_memory_low.cleared"),
    ]
    assert str(server) in events.first().text
