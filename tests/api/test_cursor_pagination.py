"""Keyset (cursor) pagination: ``?cursor=`` on every API list, offset paging kept."""

from __future__ import annotations

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ovmweb.core import keyset
from ovmweb.inventory.models import VirtualMachine
from ovmweb.jobs.models import Job
from tests import factories as f


def walk(api, url: str) -> list[dict]:
    """Every page from ``url`` by following ``next``; the rows in order."""
    rows, seen = [], 0
    while url:
        body = api.get(url).json()
        assert "count" not in body
        rows += body["results"]
        url = body["next"]
        seen += 1
        assert seen < 100, "next links loop"
    return rows


def test_cursor_walk_gives_every_vm_once_in_order(api):
    # Duplicate names: the id breaks the tie, no row is skipped or repeated at a page boundary.
    for name in ["b", "a", "c", "a", "b", "a", "d"]:
        f.VirtualMachineFactory(name=name)
    rows = walk(api, "/api/v1/vms/?cursor=&limit=2")
    expected = list(VirtualMachine.objects.order_by("name", "id").values_list("id", flat=True))
    assert [r["id"] for r in rows] == expected


def test_previous_link_goes_back_to_the_same_page(api):
    for i in range(7):
        f.ServerPoolFactory(name=f"p{i}")
    first = api.get("/api/v1/server-pools/?cursor=&limit=3").json()
    assert first["previous"] is None
    second = api.get(first["next"]).json()
    assert [p["name"] for p in second["results"]] == ["p3", "p4", "p5"]
    back = api.get(second["previous"]).json()
    assert back["results"] == first["results"]
    assert back["previous"] is None and back["next"] is not None


def test_offset_mode_is_unchanged(api):
    for _ in range(3):
        f.ServerPoolFactory()
    body = api.get("/api/v1/server-pools/?limit=2").json()
    assert body["count"] == 3 and "offset=2" in body["next"]


@pytest.mark.parametrize("cursor", ["not-base64!", "eyJ2IjpbMV0sImIiOmZhbHNlfQ", "eyJ2IjpbIngiLCJ5Il0sImIiOmZhbHNlfQ"])
def test_a_bad_cursor_is_a_400_naming_the_parameter(api, cursor):
    f.VirtualMachineFactory()
    response = api.get(f"/api/v1/vms/?cursor={cursor}")
    assert response.status_code == 400
    assert "cursor" in response.json()


def test_jobs_created_in_the_same_instant_page_by_id(api, superuser):
    at = timezone.now().replace(microsecond=123456)
    jobs = [Job.objects.create(operation="vm.start", user=superuser) for _ in range(5)]
    Job.objects.filter(pk__in=[j.pk for j in jobs[:4]]).update(created_at=at)
    Job.objects.filter(pk=jobs[4].pk).update(created_at=at + datetime.timedelta(microseconds=1))
    rows = walk(api, "/api/v1/jobs/?cursor=&limit=2")
    # Newest first; the same created_at (to the microsecond) ordered by id, descending.
    assert [r["id"] for r in rows] == [jobs[4].pk, jobs[3].pk, jobs[2].pk, jobs[1].pk, jobs[0].pk]


def test_query_count_does_not_depend_on_the_position(api):
    for i in range(12):
        f.VirtualMachineFactory(name=f"vm-{i:02d}")
    first = api.get("/api/v1/vms/?cursor=&limit=3").json()
    counts = []
    for url in ["/api/v1/vms/?cursor=&limit=3", first["next"]]:
        with CaptureQueriesContext(connection) as ctx:
            assert api.get(url).status_code == 200
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1]


@pytest.mark.django_db
def test_nullable_key_pages_through_nulls_both_ways():
    """Sorting by a server name some VMs lack: NULL is the smallest value, forwards and back."""
    servers = [f.ServerFactory(name=n) for n in ("s1", "s2")]
    for i in range(7):
        f.VirtualMachineFactory(name=f"vm{i}", server=servers[i % 2] if i % 3 else None)
    qs = VirtualMachine.objects.select_related("server").order_by("-server__name", "id")
    forward, cursor = [], None
    while True:
        p = keyset.page(qs, cursor=cursor, limit=2)
        forward += [vm.pk for vm in p.rows]
        if not p.next_cursor:
            break
        cursor = p.next_cursor
    by_server = sorted(VirtualMachine.objects.all(), key=lambda vm: (vm.server.name if vm.server else "", -vm.pk))
    assert forward == [vm.pk for vm in reversed(by_server)]
    backward, cursor = [], keyset.last_page_cursor()
    while cursor:
        p = keyset.page(qs, cursor=cursor, limit=2)
        backward = [vm.pk for vm in p.rows] + backward
        cursor = p.previous_cursor
    assert backward == forward


@pytest.mark.django_db
def test_an_unpageable_ordering_is_refused():
    with pytest.raises(keyset.KeysetError):
        keyset.page(VirtualMachine.objects.order_by("?"), cursor=None, limit=2)
    with pytest.raises(keyset.KeysetError):
        keyset.page(VirtualMachine.objects.order_by("server"), cursor=None, limit=2)
