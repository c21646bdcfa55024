import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import Http404
from django.test.utils import CaptureQueriesContext

from ovmweb.inventory.selectors import access_vm, vm_list
from tests import factories as f

pytestmark = pytest.mark.django_db


def _make(n, pool, repo):
    for _ in range(n):
        vm = f.VirtualMachineFactory(server_pool=pool, repository=repo)
        f.VmDiskSlotFactory(vm=vm, slot=0)
        f.VmDiskSlotFactory(vm=vm, slot=1)
        f.CdromSlotFactory(vm=vm, slot=2)
        f.VnicFactory(vm=vm)
        f.VnicFactory(vm=vm)


def _walk(user):
    with CaptureQueriesContext(connection) as ctx:
        for vm in vm_list(user=user):
            _ = (vm.server_pool and vm.server_pool.name, vm.server, vm.repository and vm.repository.name)
            for slot in vm.disk_slots.all():
                _ = (slot.virtual_disk and slot.virtual_disk.repository.name, slot.iso and slot.iso.name)
            for vnic in vm.vnics.all():
                _ = vnic.network and vnic.network.name
    return len(ctx.captured_queries)


def test_vm_list_query_count_does_not_grow(user, pool, repo):
    _make(2, pool, repo)
    small = _walk(user)
    _make(20, pool, repo)
    assert _walk(user) == small
    assert small <= 4


def test_vm_list_filters_and_permissions(user, pool, repo):
    a = f.VirtualMachineFactory(name="alpha", server_pool=pool)
    f.VirtualMachineFactory(name="beta")
    assert [v.name for v in vm_list(user=user, search="alp")] == ["alpha"]
    assert list(vm_list(user=user, pool=pool)) == [a]
    assert [v.name for v in vm_list(user=user, ordering="-name")] == ["beta", "alpha"]
    nobody = f.UserFactory()
    assert list(vm_list(user=nobody)) == []


def test_access_vm(user, vm):
    from django.contrib.auth.models import Permission

    assert access_vm(user, vm.pk) == vm
    with pytest.raises(Http404):
        access_vm(user, 999999)
    viewer = f.UserFactory()
    with pytest.raises(PermissionDenied):
        access_vm(viewer, vm.pk)
    viewer.user_permissions.add(Permission.objects.get(codename="view_virtualmachine"))
    viewer = type(viewer).objects.get(pk=viewer.pk)  # drop the permission cache
    assert access_vm(viewer, vm.pk) == vm
    with pytest.raises(PermissionDenied):
        access_vm(viewer, vm.pk, "start")
