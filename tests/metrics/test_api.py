"""The series in the API: ranges, incremental reads, sparklines, and the permission check."""

import time

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from ovmweb.metrics import series
from ovmweb.metrics.store import Store
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def vm():
    return f.VirtualMachineFactory()


def client_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def viewer():
    user = f.UserFactory()
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_virtualmachine", "view_server"]))
    return user


def _fill(kind, object_id, points=5):
    now = int(time.time())
    store = Store()
    for n in range(points):
        store.record(kind, now - (points - n) * 10, {object_id: {"cpu": float(n), "capacity": 1.0}})
    return now


def test_a_vm_hour_is_its_points_oldest_first(vm, viewer):
    _fill(series.VM, vm.pk)
    body = client_for(viewer).get(f"/api/v1/vms/{vm.pk}/metrics/", {"range": "hour"}).json()
    assert body["range"] == "hour" and body["step"] == 10
    assert body["values"]["cpu"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert body["timestamps"] == sorted(body["timestamps"]) and len(body["timestamps"]) == 5
    assert [s["name"] for s in body["series"]][:2] == ["cpu", "mem_actual"]
    later = client_for(viewer).get(f"/api/v1/vms/{vm.pk}/metrics/", {"since": body["timestamps"][2]}).json()
    assert later["values"]["cpu"] == [3.0, 4.0]


def test_day_and_month_read_their_own_tiers_and_a_bad_range_is_400(vm, viewer):
    _fill(series.VM, vm.pk)
    client = client_for(viewer)
    assert client.get(f"/api/v1/vms/{vm.pk}/metrics/", {"range": "day"}).json()["step"] == 60
    assert client.get(f"/api/v1/vms/{vm.pk}/metrics/", {"range": "month"}).json()["step"] == 600
    assert client.get(f"/api/v1/vms/{vm.pk}/metrics/", {"range": "year"}).status_code == 400
    assert client.get(f"/api/v1/vms/{vm.pk}/metrics/", {"since": "x"}).status_code == 400


def test_who_may_not_view_the_object_may_not_read_its_metrics(vm, viewer):
    repository = vm.repository
    _fill(series.REPOSITORY, repository.pk)
    stranger = client_for(f.UserFactory())
    assert stranger.get(f"/api/v1/vms/{vm.pk}/metrics/").status_code == 403
    assert stranger.get("/api/v1/vms/sparklines/", {"ids": vm.pk}).status_code == 403
    # The viewer of VMs and servers has no view_repository.
    assert client_for(viewer).get(f"/api/v1/repositories/{repository.pk}/metrics/").status_code == 403
    admin = client_for(f.SuperUserFactory())
    assert admin.get(f"/api/v1/repositories/{repository.pk}/metrics/").json()["values"]["capacity"] == [1.0] * 5


def test_sparklines_of_a_table_in_one_request(vm, viewer):
    other = f.VirtualMachineFactory()
    _fill(series.VM, vm.pk)
    client = client_for(viewer)
    body = client.get("/api/v1/vms/sparklines/", {"ids": f"{vm.pk},{other.pk},999999"}).json()
    assert body["series"] == "cpu"
    assert body["values"] == {str(vm.pk): [0.0, 1.0, 2.0, 3.0, 4.0], str(other.pk): []}
    assert client.get("/api/v1/vms/sparklines/", {"ids": "1,x"}).status_code == 400
    assert client.get("/api/v1/servers/sparklines/", {"ids": ""}).json()["values"] == {}
