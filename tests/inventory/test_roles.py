"""Roles per server pool: what each role may do, where, and how lists are filtered
(ovmweb/inventory/roles.py, through ovmweb/inventory/permissions.py)."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied
from django.http import Http404

from ovmweb.accounts.models import Role, RoleAssignment
from ovmweb.audit.models import AuditAction, AuditRecord
from ovmweb.errors import Conflict
from ovmweb.inventory import permissions
from ovmweb.inventory.models import IsoFile, Repository, VirtualDisk, VirtualMachine
from ovmweb.inventory.services import roles as role_services
from ovmweb.jobs.models import Event, Job
from ovmweb.jobs.services import event_record, job_submit
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def pools():
    a, b = f.ServerPoolFactory(name="alpha"), f.ServerPoolFactory(name="beta")
    vm_a = f.VirtualMachineFactory(name="vm-a", server_pool=a)
    vm_b = f.VirtualMachineFactory(name="vm-b", server_pool=b)
    return a, b, vm_a, vm_b


def holder(role, pool, **kwargs):
    user = f.UserFactory(**kwargs)
    RoleAssignment.objects.create(role=role, user=user, server_pool=pool)
    return user


POWER = ("vm.start", "vm.stop", "vm.restart", "vm.kill", "vm.suspend", "vm.resume")


@pytest.mark.parametrize(
    ("role", "may", "may_not"),
    [
        (Role.VIEWER, ("vm.view", "vm.console"), (*POWER, "vm.console_input", "vm.delete", "pool.roles")),
        (Role.OPERATOR, ("vm.view", "vm.console_input", *POWER), ("vm.delete", "vm.change", "vm.migrate")),
        (Role.ADMINISTRATOR, ("vm.delete", "vm.migrate", "vm.change", *POWER, "pool.roles"), ("vm.create",)),
    ],
)
def test_each_role_on_its_pool_only(pools, role, may, may_not):
    a, _b, vm_a, vm_b = pools
    user = holder(role, a)
    for action in may:
        assert permissions.can(user, action, vm_a if action != "pool.roles" else a), action
        assert not permissions.can(user, action, vm_b if action != "pool.roles" else _b), action
        # Another pool's object is not found, not forbidden.
        with pytest.raises(Http404):
            permissions.authorize(user, action, vm_b)
    for action in may_not:
        assert not permissions.can(user, action, vm_a), action
    if role == Role.VIEWER:
        with pytest.raises(PermissionDenied):  # seen, so forbidden rather than not found
            permissions.authorize(user, "vm.start", vm_a)


def test_parts_of_a_vm_jobs_and_events_belong_to_its_pool(pools):
    a, _b, vm_a, vm_b = pools
    viewer = holder(Role.VIEWER, a)
    slot_a = f.VmDiskSlotFactory(vm=vm_a, slot=0)
    slot_b = f.VmDiskSlotFactory(vm=vm_b, slot=0)
    vnic_b = f.VnicFactory(vm=vm_b)
    job_a = job_submit(operation="vm.start", summary="a", user=None, target=vm_a, lock=[vm_a])
    job_b = job_submit(operation="vm.start", summary="b", user=None, target=vm_b, lock=[vm_b])
    own = job_submit(operation="vm.start", summary="own", user=viewer, target=vm_b, lock=[])
    event_a, event_b = event_record(obj=vm_a, type="t", text="a"), event_record(obj=vm_b, type="t", text="b")
    assert permissions.can(viewer, "disk.view", slot_a.virtual_disk)
    assert not permissions.can(viewer, "disk.view", slot_b.virtual_disk)
    assert not permissions.can(viewer, "vnic.view", vnic_b)
    assert list(permissions.scope(viewer, "vm.view", VirtualMachine.objects.all())) == [vm_a]
    assert list(permissions.scope(viewer, "disk.view", VirtualDisk.objects.all())) == [slot_a.virtual_disk]
    assert set(permissions.scope(viewer, "job.view", Job.objects.all())) == {job_a, own}
    assert list(permissions.scope(viewer, "event.view", Event.objects.all())) == [event_a]
    assert permissions.can(viewer, "job.view", own) and not permissions.can(viewer, "job.view", job_b)
    assert not permissions.can(viewer, "event.view", event_b)
    # Operators abort the jobs of their pool; a viewer does not.
    operator = holder(Role.OPERATOR, a)
    assert permissions.can(operator, "job.abort", job_a) and not permissions.can(operator, "job.abort", job_b)
    assert not permissions.can(viewer, "job.abort", job_a)


def test_unassigned_vms_and_repositories_need_an_estate_wide_role(pools):
    a, _b, _vm_a, _vm_b = pools
    loose = f.VirtualMachineFactory(name="loose", server_pool=None)
    repository = f.RepositoryFactory(server_pools=[a])
    f.IsoFileFactory(repository=repository)
    pool_viewer, estate_viewer = holder(Role.VIEWER, a), holder(Role.VIEWER, None)
    assert not permissions.can(pool_viewer, "vm.view", loose)
    assert not permissions.can(pool_viewer, "repository.view")
    assert list(permissions.scope(pool_viewer, "iso.view", IsoFile.objects.all())) == []
    assert permissions.can(estate_viewer, "vm.view", loose)
    assert permissions.scope(estate_viewer, "repository.view", Repository.objects.all()).count() == (
        Repository.objects.count()
    )
    assert permissions.scope(estate_viewer, "vm.view", VirtualMachine.objects.all()).count() == 3
    estate_admin = holder(Role.ADMINISTRATOR, None)
    assert permissions.can(estate_admin, "vm.create") and permissions.can(estate_admin, "repository.delete")


def test_a_role_held_by_a_group_counts_for_its_members(pools):
    a, _b, vm_a, vm_b = pools
    group = Group.objects.create(name="operators-a")
    RoleAssignment.objects.create(role=Role.OPERATOR, group=group, server_pool=a)
    member = f.UserFactory()
    member.groups.add(group)
    assert permissions.can(member, "vm.start", vm_a) and not permissions.can(member, "vm.start", vm_b)


def test_model_permissions_still_act_on_the_whole_estate(pools):
    _a, _b, vm_a, vm_b = pools
    user = f.UserFactory()
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_virtualmachine", "change_virtualmachine"]))
    assert all(permissions.can(user, "vm.start", vm) for vm in (vm_a, vm_b))
    assert permissions.scope(user, "vm.view", VirtualMachine.objects.all()).count() == 2


def test_grants_and_removals_are_events_on_the_pool_and_audit_records(pools):
    a, _b, _vm_a, _vm_b = pools
    admin, grantee = f.SuperUserFactory(), f.UserFactory(username="grantee")
    row = role_services.role_grant(user=admin, pool=a, role=Role.VIEWER, grantee_user=grantee)
    with pytest.raises(Conflict):
        role_services.role_grant(user=admin, pool=a, role=Role.VIEWER, grantee_user=grantee)
    role_services.role_revoke(user=admin, assignment=row)
    assert list(Event.objects.filter(object_id=a.pk).values_list("type", flat=True).order_by("id")) == [
        "role.granted",
        "role.removed",
    ]
    audits = AuditRecord.objects.filter(action=AuditAction.ROLE, object_repr="grantee").order_by("id")
    assert [(r.outcome, r.detail["role"], r.detail["server_pool"]) for r in audits] == [
        ("granted", "viewer", a.pk),
        ("removed", "viewer", a.pk),
    ]
    assert not RoleAssignment.objects.exists()


def test_estate_wide_roles_are_granted_in_the_admin(admin_client):
    grantee = f.UserFactory(username="estate-viewer")
    response = admin_client.post(
        "/admin/accounts/roleassignment/add/", {"role": "viewer", "user": grantee.pk, "group": "", "server_pool": ""}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    row = RoleAssignment.objects.get(user=grantee)
    assert row.server_pool is None and row.granted_by is not None
    assert AuditRecord.objects.filter(action=AuditAction.ROLE, object_repr="estate-viewer", outcome="granted").exists()
    assert admin_client.post(f"/admin/accounts/roleassignment/{row.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not RoleAssignment.objects.exists()


def test_the_admin_lists_only_the_pools_objects(pools, client):
    a, _b, vm_a, vm_b = pools
    staff = holder(Role.VIEWER, a, is_staff=True)
    client.force_login(staff)
    page = client.get("/admin/inventory/virtualmachine/")
    assert page.status_code == 200
    assert vm_a.name in page.content.decode() and vm_b.name not in page.content.decode()
    assert client.get(f"/admin/inventory/virtualmachine/{vm_b.pk}/change/").status_code in (302, 404)
