"""Seed 7.4: VNICs and MAC addresses."""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from ovmweb.errors import Conflict
from ovmweb.inventory.choices import VmStatus
from ovmweb.inventory.models import VirtualMachine, Vnic
from ovmweb.inventory.services.vnics import (
    MacRangeExhausted,
    mac_allocate,
    mac_range_get,
    mac_range_set,
    vnic_create,
    vnic_delete,
)
from tests import factories as f

from .conftest import run_concurrently


@pytest.mark.django_db
def test_default_range_from_settings_and_sequential_macs(user, vm, settings):
    assert (mac_range_get().start, mac_range_get().end) == settings.OVMWEB_MAC_RANGE_DEFAULT
    macs = [vnic_create(vm=vm, user=user).mac for _ in range(3)]
    assert macs == ["00:21:f6:00:00:00", "00:21:f6:00:00:01", "00:21:f6:00:00:02"]


@pytest.mark.django_db
def test_model_by_domain_type(user, pool):
    hvm = f.VirtualMachineFactory(server_pool=pool, domain_type="HVM")
    pv = f.VirtualMachineFactory(server_pool=pool, domain_type="PVHVM")
    assert vnic_create(vm=hvm, user=user).model == "e1000"
    assert vnic_create(vm=pv, user=user).model == "virtio"


@pytest.mark.django_db
def test_bad_ranges_refused_with_field_errors_and_nothing_written():
    mac_range_get()
    for start, end, field in [
        ("zz", "00:21:f6:00:00:01", "start"),
        ("01:00:00:00:00:00", "01:00:00:00:00:ff", "start"),
        ("00:21:f6:00:00:09", "00:21:f6:00:00:01", "end"),
    ]:
        with pytest.raises(ValidationError) as exc:
            mac_range_set(start=start, end=end)
        assert field in exc.value.message_dict
    assert mac_range_get().start == "00:21:f6:00:00:00"


@pytest.mark.django_db
def test_exhausted_range_is_a_clear_error_and_holes_are_reused(user, vm):
    mac_range_set(start="00:21:f6:00:00:00", end="00:21:f6:00:00:02")
    vnics = [vnic_create(vm=vm, user=user) for _ in range(3)]
    with pytest.raises(MacRangeExhausted, match="exhausted"):
        vnic_create(vm=vm, user=user)
    vnic_delete(vnic=vnics[1], user=user)
    assert vnic_create(vm=vm, user=user).mac == "00:21:f6:00:00:01"


@pytest.mark.django_db
def test_explicit_mac_validated_and_unique(user, vm):
    v = vnic_create(vm=vm, user=user, mac="00:21:F6:AA:00:01")
    assert v.mac == "00:21:f6:aa:00:01"
    with pytest.raises(ValidationError):
        vnic_create(vm=vm, user=user, mac="00:21:f6:aa:00:01")
    with pytest.raises(ValidationError):
        vnic_create(vm=vm, user=user, mac="ff:ff:ff:ff:ff:ff")


@pytest.mark.django_db
def test_database_refuses_duplicate_macs(vm):
    Vnic.objects.create(vm=vm, mac="00:21:f6:00:00:10")
    with pytest.raises(IntegrityError), transaction.atomic():
        Vnic.objects.create(vm=vm, mac="00:21:f6:00:00:10")


@pytest.mark.django_db
def test_vnic_of_suspended_vm_cannot_be_added_or_removed(user, vm):
    vnic = vnic_create(vm=vm, user=user)
    VirtualMachine.objects.filter(pk=vm.pk).update(status=VmStatus.SUSPENDED)
    with pytest.raises(Conflict, match="SUSPENDED"):
        vnic_create(vm=vm, user=user)
    with pytest.raises(Conflict, match="SUSPENDED"):
        vnic_delete(vnic=vnic, user=user)
    assert Vnic.objects.filter(pk=vnic.pk).exists()


@pytest.mark.django_db
def test_running_windows_without_pv_drivers_cannot_hot_add_vnic(user, pool):
    vm = f.VirtualMachineFactory(server_pool=pool, status=VmStatus.RUNNING, os_type="WINDOWS")
    with pytest.raises(Conflict, match="Paravirtual Drivers"):
        vnic_create(vm=vm, user=user)
    vm.pv_drivers_installed = True
    vm.save()
    assert vnic_create(vm=vm, user=user).vm == vm


@pytest.mark.django_db
def test_mac_allocate_returns_free_address(vm):
    Vnic.objects.create(vm=vm, mac="00:21:f6:00:00:00")
    assert mac_allocate() == "00:21:f6:00:00:01"


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_creations_get_fifty_distinct_macs():
    user = f.SuperUserFactory()
    vms = [f.VirtualMachineFactory() for _ in range(5)]

    def create(i):
        return vnic_create(vm=vms[i % 5], user=user).mac

    results = run_concurrently(create, [(i,) for i in range(50)])
    errors = [e for _r, e in results if e is not None]
    assert errors == []
    macs = [r for r, _e in results]
    assert len(set(macs)) == 50
    assert Vnic.objects.count() == 50
