"""Authentication, permissions, pagination and every collection of DESIGN.md §5."""

import pytest
from rest_framework.test import APIClient

from ovmweb.accounts.tokens import create_token
from ovmweb.jobs.services import event_record, job_submit
from tests import factories as f

COLLECTIONS = [
    "server-pools",
    "servers",
    "repositories",
    "networks",
    "vms",
    "vnics",
    "virtual-disks",
    "iso-files",
    "clone-customizers",
    "jobs",
    "events",
    "anti-affinity-groups",
    "processor-compatibility-groups",
    "virtual-appliances",
]

pytestmark = pytest.mark.django_db


@pytest.fixture
def one_of_each(superuser):
    """One row in every collection; returns {collection: pk}."""
    vm = f.VirtualMachineFactory()
    server = f.ServerFactory(server_pool=vm.server_pool)
    disk = f.VirtualDiskFactory(repository=vm.repository)
    f.VmDiskSlotFactory(vm=vm, virtual_disk=disk, slot=0)
    vnic = f.VnicFactory(vm=vm)
    job = job_submit(operation="vm.start", summary="start it", user=superuser, target=vm)
    event = event_record(obj=vm, type="test", text="something happened", user=superuser)
    return {
        "server-pools": vm.server_pool_id,
        "servers": server.pk,
        "repositories": vm.repository_id,
        "networks": f.NetworkFactory().pk,
        "vms": vm.pk,
        "vnics": vnic.pk,
        "virtual-disks": disk.pk,
        "iso-files": f.IsoFileFactory(repository=vm.repository).pk,
        "clone-customizers": f.CloneCustomizerFactory(vm=vm).pk,
        "jobs": job.pk,
        "events": event.pk,
        "anti-affinity-groups": f.AntiAffinityGroupFactory(server_pool=vm.server_pool).pk,
        "processor-compatibility-groups": f.ProcessorCompatibilityGroupFactory().pk,
        "virtual-appliances": f.VirtualApplianceFactory(repository=vm.repository).pk,
    }


@pytest.mark.parametrize("collection", COLLECTIONS + ["mac-range"])
def test_anonymous_is_refused(client, collection):
    response = client.get(f"/api/v1/{collection}/")
    # Token authentication comes first, so the answer says how to authenticate.
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Token"


def test_anonymous_cannot_act(client):
    vm = f.VirtualMachineFactory()
    response = client.post(f"/api/v1/vms/{vm.pk}/start/")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Token"
    vm.refresh_from_db()
    assert vm.status == "STOPPED"


def test_token_auth(superuser):
    _, key = create_token(user=superuser)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-the-key")
    refused = client.get("/api/v1/vms/")
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Token"
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/vms/").status_code == 200


def test_session_auth(client, superuser):
    client.force_login(superuser)
    assert client.get("/api/v1/server-pools/").status_code == 200


def test_user_without_permission_is_forbidden(plain_api):
    vm = f.VirtualMachineFactory()
    assert plain_api.get("/api/v1/vms/").status_code == 403
    assert plain_api.get(f"/api/v1/vms/{vm.pk}/").status_code == 403
    assert plain_api.post(f"/api/v1/vms/{vm.pk}/start/", {}, format="json").status_code == 403
    assert plain_api.post("/api/v1/server-pools/", {"name": "x"}, format="json").status_code == 403
    vm.refresh_from_db()
    assert vm.status == "STOPPED"


def test_view_permission_reads_but_cannot_act(plain_user, plain_api):
    from django.contrib.auth.models import Permission

    plain_user.user_permissions.add(Permission.objects.get(codename="view_virtualmachine"))
    vm = f.VirtualMachineFactory()
    assert plain_api.get("/api/v1/vms/").json()["count"] == 1
    assert plain_api.post(f"/api/v1/vms/{vm.pk}/start/", {}, format="json").status_code == 403


def test_pagination_shape(api):
    for _ in range(5):
        f.ServerPoolFactory()
    body = api.get("/api/v1/server-pools/?limit=2&offset=1").json()
    assert body["count"] == 5
    assert len(body["results"]) == 2
    assert "offset=3" in body["next"] and body["previous"] is not None
    last = api.get("/api/v1/server-pools/?limit=2&offset=4").json()
    assert len(last["results"]) == 1 and last["next"] is None


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_list_and_detail(api, one_of_each, collection):
    body = api.get(f"/api/v1/{collection}/").json()
    pk = one_of_each[collection]
    assert pk in [row["id"] for row in body["results"]]
    detail = api.get(f"/api/v1/{collection}/{pk}/")
    assert detail.status_code == 200
    assert detail.json()["id"] == pk
    assert api.get(f"/api/v1/{collection}/987654321/").status_code == 404


def test_vm_representation(api, one_of_each):
    vm = api.get(f"/api/v1/vms/{one_of_each['vms']}/").json()
    for field in [
        "id",
        "name",
        "uuid",
        "domain_type",
        "status",
        "server_pool",
        "server",
        "repository",
        "os_type",
        "vcpus",
        "max_vcpus",
        "memory_mib",
        "max_memory_mib",
        "huge_pages",
        "pending_changes",
        "disks",
        "vnics",
        "keymap",
        "mouse_device",
        "boot_order",
        "ha_enabled",
        "cpu_pinning",
        "pvm_boot_url",
        "vnc_port",
        "serial_port",
    ]:
        assert field in vm, field
    assert vm["disks"][0]["virtual_disk"] == one_of_each["virtual-disks"]
    assert vm["disks"][0]["size_bytes"] == 1 << 30
    assert [n["id"] for n in vm["vnics"]] == [one_of_each["vnics"]]


def test_job_does_not_echo_params(api, superuser):
    job = job_submit(operation="server.discover", summary="discover", user=superuser, params={"password": "s3cret"})
    assert "s3cret" not in api.get(f"/api/v1/jobs/{job.pk}/").content.decode()


def test_console_ticket_hash_never_rendered(api):
    # The console ticket serializer is shared with E's endpoint; the hash is a secret.
    from ovmweb.api.serializers.vms import ConsoleTicketSerializer

    assert "token_hash" not in ConsoleTicketSerializer().fields


def test_schema_and_docs(api):
    schema = api.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    start = schema["paths"]["/api/v1/vms/{id}/start/"]["post"]["responses"]
    assert {"202", "409"} <= set(start)
    assert "/api/v1/servers/discover/" in schema["paths"]
    assert "/api/v1/mac-range/" in schema["paths"]
    assert api.get("/api/v1/docs/").status_code == 200
