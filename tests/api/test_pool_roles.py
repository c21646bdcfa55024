"""Roles on a pool through the REST API and the pool's roles page; console tickets by role."""

import pytest
from django.test import Client
from rest_framework.test import APIClient

from ovmweb.accounts.models import Role, RoleAssignment
from ovmweb.audit.models import AuditAction, AuditRecord
from ovmweb.inventory import choices, roles
from ovmweb.jobs.models import Event
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def pools():
    a, b = f.ServerPoolFactory(name="alpha"), f.ServerPoolFactory(name="beta")
    return a, b


def holder(role, pool):
    user = f.UserFactory()
    RoleAssignment.objects.create(role=role, user=user, server_pool=pool)
    return user


def api_as(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_an_administrator_of_the_pool_manages_its_roles(pools):
    a, b = pools
    admin, grantee = holder(Role.ADMINISTRATOR, a), f.UserFactory(username="new-operator")
    client = api_as(admin)
    created = client.post(f"/api/v1/server-pools/{a.pk}/roles/", {"role": "operator", "user": grantee.pk}, "json")
    assert created.status_code == 201, created.content
    assert created.json()["username"] == "new-operator"
    again = client.post(f"/api/v1/server-pools/{a.pk}/roles/", {"role": "operator", "user": grantee.pk}, "json")
    assert again.status_code == 409
    listed = client.get(f"/api/v1/server-pools/{a.pk}/roles/").json()
    assert sorted(r["role"] for r in listed) == ["administrator", "operator"]
    assert client.delete(f"/api/v1/server-pools/{a.pk}/roles/{created.json()['id']}/").status_code == 204
    assert Event.objects.filter(object_id=a.pk, type__startswith="role.").count() == 2
    assert AuditRecord.objects.filter(action=AuditAction.ROLE, object_repr="new-operator").count() == 2
    # Another pool: not found; neither role nor name leaks.
    assert client.get(f"/api/v1/server-pools/{b.pk}/roles/").status_code == 404
    assert (
        client.post(f"/api/v1/server-pools/{b.pk}/roles/", {"role": "viewer", "user": admin.pk}, "json").status_code
        == 404
    )


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR])
def test_viewers_and_operators_read_roles_but_do_not_change_them(pools, role):
    a, _b = pools
    client = api_as(holder(role, a))
    assert client.get(f"/api/v1/server-pools/{a.pk}/roles/").status_code == 200
    refused = client.post(f"/api/v1/server-pools/{a.pk}/roles/", {"role": "administrator", "user": 1}, "json")
    assert refused.status_code == 403
    assert RoleAssignment.objects.count() == 1


def test_power_actions_by_role_and_pool(pools):
    a, b = pools
    vm_a = f.VirtualMachineFactory(server_pool=a, status=choices.VmStatus.RUNNING)
    vm_b = f.VirtualMachineFactory(server_pool=b, status=choices.VmStatus.RUNNING)
    viewer = api_as(holder(Role.VIEWER, a))
    assert viewer.get(f"/api/v1/vms/{vm_a.pk}/").status_code == 200
    assert viewer.post(f"/api/v1/vms/{vm_a.pk}/stop/", {}, "json").status_code == 403
    assert viewer.get(f"/api/v1/vms/{vm_b.pk}/").status_code == 404
    operator = api_as(holder(Role.OPERATOR, a))
    assert operator.post(f"/api/v1/vms/{vm_b.pk}/stop/", {}, "json").status_code == 404
    assert operator.delete(f"/api/v1/vms/{vm_a.pk}/").status_code == 403
    assert operator.post(f"/api/v1/vms/{vm_a.pk}/stop/", {}, "json").status_code == 202
    assert [vm["id"] for vm in operator.get("/api/v1/vms/").json()["results"]] == [vm_a.pk]
    assert [p["id"] for p in operator.get("/api/v1/server-pools/").json()["results"]] == [a.pk]


def test_console_tickets_follow_the_role(pools):
    a, b = pools
    server = f.ServerFactory(server_pool=a)
    vm_a = f.VirtualMachineFactory(server_pool=a, server=server, status=choices.VmStatus.RUNNING, vnc_port=5901)
    vm_b = f.VirtualMachineFactory(server_pool=b, status=choices.VmStatus.RUNNING, vnc_port=5902)
    for role, read_only in ((Role.VIEWER, True), (Role.OPERATOR, False), (Role.ADMINISTRATOR, False)):
        client = api_as(holder(role, a))
        issued = client.post(f"/api/v1/vms/{vm_a.pk}/console-tickets/", {"kind": "vnc"}, "json")
        assert issued.status_code == 201, issued.content
        assert issued.json()["read_only"] is read_only, role
        assert client.post(f"/api/v1/vms/{vm_b.pk}/console-tickets/", {"kind": "vnc"}, "json").status_code == 404


def test_the_roles_page_of_a_pool(pools):
    a, b = pools
    admin, grantee = holder(Role.ADMINISTRATOR, a), f.UserFactory(username="page-grantee")
    client = Client()
    client.force_login(admin)
    page = client.get(f"/pools/{a.pk}/roles/")
    assert page.status_code == 200 and admin.username in page.content.decode()
    assert client.post(f"/pools/{a.pk}/roles/", {"role": "viewer", "user": grantee.pk}).status_code == 302
    row = RoleAssignment.objects.get(user=grantee)
    assert (row.role, row.server_pool, row.granted_by) == ("viewer", a, admin)
    assert "page-grantee" in client.get(f"/pools/{a.pk}/roles/").content.decode()
    assert client.post(f"/pools/{a.pk}/roles/{row.pk}/remove/").status_code == 302
    assert not RoleAssignment.objects.filter(user=grantee).exists()
    assert client.get(f"/pools/{b.pk}/roles/").status_code == 404
    viewer = Client()
    viewer.force_login(holder(Role.VIEWER, a))
    assert 'id="role-form"' not in viewer.get(f"/pools/{a.pk}/roles/").content.decode()
    assert viewer.post(f"/pools/{a.pk}/roles/", {"role": "administrator", "user": grantee.pk}).status_code == 403


def test_a_cold_migration_needs_a_role_on_the_target_pool(pools):
    a, b = pools
    vm_a = f.VirtualMachineFactory(server_pool=a, status=choices.VmStatus.STOPPED)
    admin = holder(Role.ADMINISTRATOR, a)
    client = api_as(admin)
    assert client.post(f"/api/v1/vms/{vm_a.pk}/migrate/", {"target_pool": b.pk}, "json").status_code == 404
    RoleAssignment.objects.create(role=Role.VIEWER, user=admin, server_pool=b)
    roles.forget(admin)  # force_authenticate keeps this very user object, and its roles read once
    assert client.post(f"/api/v1/vms/{vm_a.pk}/migrate/", {"target_pool": b.pk}, "json").status_code == 403
    RoleAssignment.objects.create(role=Role.ADMINISTRATOR, user=admin, server_pool=b)
    roles.forget(admin)
    # Past the doors: the service's own rules decide now (202, or 409 with the reason).
    assert client.post(f"/api/v1/vms/{vm_a.pk}/migrate/", {"target_pool": b.pk}, "json").status_code in (202, 409)
