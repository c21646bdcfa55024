"""Bad input is a 400 with field errors and writes nothing (issue: "Bad input")."""

import pytest

from ovmweb.inventory.models import ServerPool, VirtualDisk, VirtualMachine, Vnic
from ovmweb.jobs.models import Event, Job
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def pool():
    return f.ServerPoolFactory()


def vm_body(pool, **extra):
    return {"name": "vm-x", "domain_type": "HVM", "os_type": "OL6", "server_pool": pool.pk, **extra}


def assert_nothing_written(before_vms=0):
    assert VirtualMachine.objects.count() == before_vms
    assert not Job.objects.exists()
    assert not Vnic.objects.exists()


@pytest.mark.parametrize(
    "extra,field",
    [
        ({"colour": "blue"}, "colour"),  # unknown field
        ({"status": "RUNNING"}, "status"),  # read-only field
        ({"vcpus": "many"}, "vcpus"),  # wrong type
        ({"vcpus": 10**30}, "vcpus"),  # out of any database's range
        ({"vcpus": 0}, "vcpus"),
        ({"memory_mib": -512}, "memory_mib"),  # negative
        ({"name": "x" * 129}, "name"),  # too long
        ({"name": ""}, "name"),  # empty
        ({"name": None}, "name"),
        ({"domain_type": "XEN"}, "domain_type"),  # not a choice
        ({"server_pool": 987654}, "server_pool"),  # no such object
        ({"repository": "abc"}, "repository"),
        ({"source": {"kind": "iso", "iso": 987654}}, "source"),
        ({"source": {"kind": "iso"}}, "source"),
        ({"source": {"kind": "none", "sauce": 1}}, "source"),  # unknown nested field
        ({"disks": [{"new": {"name": "d", "size_bytes": -1}}]}, "disks"),  # negative size
        ({"disks": [{"virtual_disk": 987654}]}, "disks"),
        ({"disks": "all of them"}, "disks"),
        ({"vnics": [{"network": 987654}]}, "vnics"),
        ({"boot_order": ["floppy"]}, "boot_order"),
    ],
)
def test_vm_create_field_errors(api, pool, extra, field):
    response = api.post("/api/v1/vms/", vm_body(pool, **extra), format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert_nothing_written()


def test_missing_required_fields(api):
    response = api.post("/api/v1/vms/", {}, format="json")
    assert response.status_code == 400
    assert {"name", "domain_type", "os_type"} <= set(response.json())
    assert_nothing_written()


def test_rule_violation_from_service_is_400(api, pool):
    response = api.post("/api/v1/vms/", vm_body(pool, vcpus=4, max_vcpus=2), format="json")
    assert response.status_code == 400, response.content
    assert_nothing_written()


def test_malformed_json(api):
    response = api.generic("POST", "/api/v1/vms/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert_nothing_written()


def test_body_that_is_not_an_object(api):
    response = api.post("/api/v1/vms/", [1, 2, 3], format="json")
    assert response.status_code == 400
    assert_nothing_written()


def test_vm_update_errors_change_nothing(api):
    vm = f.VirtualMachineFactory(name="keep", vcpus=1, max_vcpus=2)
    for body, field in [
        ({"status": "RUNNING"}, "status"),
        ({"uuid": "x"}, "uuid"),
        ({"vcpus": -3}, "vcpus"),
        ({"name": "y" * 200}, "name"),
        ({"memroy_mib": 1}, "memroy_mib"),
    ]:
        response = api.patch(f"/api/v1/vms/{vm.pk}/", body, format="json")
        assert response.status_code == 400 and field in response.json(), (body, response.content)
    response = api.patch(f"/api/v1/vms/{vm.pk}/", {"vcpus": 3}, format="json")  # > max_vcpus: the rule
    assert response.status_code == 400
    vm.refresh_from_db()
    assert (vm.name, vm.status, vm.vcpus) == ("keep", "STOPPED", 1)
    assert not Event.objects.filter(type="vm.config").exists()


@pytest.mark.parametrize(
    "body,field",
    [
        ({"size_bytes": -1}, "size_bytes"),
        ({"size_bytes": 0}, "size_bytes"),
        ({"size_bytes": "big"}, "size_bytes"),
        ({"repository": 987654}, "repository"),
        ({"name": ""}, "name"),
        ({"shape": "round"}, "shape"),
    ],
)
def test_virtual_disk_create_errors(api, body, field):
    repo = f.RepositoryFactory()
    full = {"name": "d1", "repository": repo.pk, "size_bytes": 1 << 30, **body}
    response = api.post("/api/v1/virtual-disks/", full, format="json")
    assert response.status_code == 400 and field in response.json()
    assert not VirtualDisk.objects.exists() and not Job.objects.exists()


@pytest.mark.parametrize(
    "body,field",
    [
        ({"name": ""}, "name"),
        ({"name": "p" * 129}, "name"),
        ({"name": "p", "architecture": "ARM"}, "architecture"),
        ({"name": "p", "servers": [1]}, "servers"),
        ({"name": ["list"]}, "name"),
    ],
)
def test_server_pool_errors(api, body, field):
    response = api.post("/api/v1/server-pools/", body, format="json")
    assert response.status_code == 400 and field in response.json(), response.content
    assert not ServerPool.objects.exists()


def test_duplicate_name_is_400(api):
    f.ServerPoolFactory(name="dup")
    response = api.post("/api/v1/server-pools/", {"name": "dup"}, format="json")
    assert response.status_code == 400 and "name" in response.json()
    assert ServerPool.objects.count() == 1


@pytest.mark.parametrize(
    "body,field",
    [
        ({"hostname": "h", "host_key_fingerprint": "not-a-fingerprint", "password": "pw"}, "host_key_fingerprint"),
        (
            {"hostname": "h", "host_key_fingerprint": "SHA256:" + "A" * 43, "password": "pw", "ssh_port": 70000},
            "ssh_port",
        ),
        ({"hostname": "h", "host_key_fingerprint": "SHA256:" + "A" * 43}, "password"),
        (
            {"hostname": "h", "host_key_fingerprint": "SHA256:" + "A" * 43, "password": "pw", "transport": "telnet"},
            "transport",
        ),
        ({"host_key_fingerprint": "SHA256:" + "A" * 43, "password": "pw"}, "hostname"),
    ],
)
def test_server_discover_errors(api, body, field):
    response = api.post("/api/v1/servers/discover/", body, format="json")
    assert response.status_code == 400 and field in response.json(), response.content
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"start": "00:21:f6:00:00:00"},
        {"start": "zz:21:f6:00:00:00", "end": "00:21:f6:ff:ff:ff"},
        {"start": "01:21:f6:00:00:00", "end": "01:21:f6:ff:ff:ff"},
        {"start": 5, "end": []},
    ],
)
def test_mac_range_errors(api, body):
    before = api.get("/api/v1/mac-range/").json()
    response = api.put("/api/v1/mac-range/", body, format="json")
    assert response.status_code == 400, response.content
    assert api.get("/api/v1/mac-range/").json() == before


@pytest.mark.parametrize(
    "query", ["server_pool=abc", "server=-1", "status=FLYING", "server_pool=99999999999999999999999", "limit=abc"]
)
def test_vm_list_bad_query(api, query):
    response = api.get(f"/api/v1/vms/?{query}")
    assert response.status_code in (200, 400)
    if query != "limit=abc":
        assert response.status_code == 400


def test_huge_offset_is_empty_page(api):
    f.VirtualMachineFactory()
    body = api.get("/api/v1/vms/?offset=99999999999999999999999&limit=5").json()
    assert body["count"] == 1 and body["results"] == []


def test_nonexistent_and_huge_ids_are_404(api):
    assert api.get("/api/v1/vms/99999999999999999999999/").status_code == 404
    assert api.post("/api/v1/vms/99999999999999999999999/start/", {}, format="json").status_code == 404
    assert api.get("/api/v1/jobs/99999999999999999999999/").status_code == 404
    assert api.post("/api/v1/jobs/99999999999999999999999/abort/", {}, format="json").status_code == 404
