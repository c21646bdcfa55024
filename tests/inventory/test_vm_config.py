"""vm_create and vm_update: seeds 7.1, 7.2, 7.9, 7.13, 7.14, 7.15."""

import pytest
from django.core.exceptions import ValidationError

from ovmweb.errors import Conflict
from ovmweb.inventory.choices import VmStatus
from ovmweb.inventory.models import VirtualMachine
from ovmweb.inventory.services.vm_copies import vm_clone, vm_export, vm_move
from ovmweb.inventory.services.vm_migration import vm_migrate
from ovmweb.inventory.services.vms import vm_create, vm_update
from ovmweb.jobs.models import Job
from tests import factories as f

pytestmark = pytest.mark.django_db


def test_create_hvm_from_iso_adds_cdrom_and_e1000_vnic(user, pool, repo):
    iso = f.IsoFileFactory(repository=repo)
    net = f.NetworkFactory()
    vm = vm_create(
        user=user,
        name="web1",
        server_pool=pool,
        repository=repo,
        domain_type="HVM",
        os_type="OL6",
        vcpus=2,
        max_vcpus=4,
        memory_mib=1024,
        source={"kind": "iso", "iso": iso},
        disks=[{"virtual_disk": f.VirtualDiskFactory(repository=repo)}],
        vnics=[{"network": net}],
    )
    assert vm.status == VmStatus.STOPPED
    slots = list(vm.disk_slots.order_by("slot"))
    assert [s.kind for s in slots] == ["DISK", "CDROM"] and slots[0].bus == "sata"
    assert vm.boot_order == ["cdrom", "disk"]
    assert vm.vnics.get().model == "e1000" and vm.vnics.get().mac.startswith("00:21:f6")


def test_create_pvm_from_iso_refused(user, pool, repo):
    with pytest.raises(ValidationError) as exc:
        vm_create(
            user=user,
            name="x",
            server_pool=pool,
            domain_type="PVM",
            os_type="OL6",
            source={"kind": "iso", "iso": f.IsoFileFactory(repository=repo)},
        )
    assert "source" in exc.value.message_dict
    assert not VirtualMachine.objects.exists()


def test_create_pvm_from_url_and_ol7_refused(user, pool, settings):
    settings.OVMWEB_IMPORT_ALLOWED_NETWORKS = ["10.0.0.0/8"]  # an internal NFS server, allowed
    vm = vm_create(
        user=user,
        name="pv",
        server_pool=pool,
        domain_type="PVM",
        os_type="OL6",
        source={"kind": "pvm_url", "url": "nfs://10.0.0.5/export/ol6"},
    )
    assert vm.pvm_boot_url == "nfs://10.0.0.5/export/ol6"
    with pytest.raises(ValidationError) as exc:
        vm_create(
            user=user,
            name="pv7",
            server_pool=pool,
            domain_type="PVM",
            os_type="OL7",
            source={"kind": "pvm_url", "url": "nfs://10.0.0.5/export/ol7"},
        )
    assert "Oracle Linux 7" in exc.value.message_dict["domain_type"][0]
    with pytest.raises(ValidationError):
        vm_create(
            user=user,
            name="pvx",
            server_pool=pool,
            domain_type="PVM",
            os_type="OL6",
            source={"kind": "pvm_url", "url": "file:///etc/passwd"},
        )


def test_pvhvm_with_emulated_disk_refused(user, pool, repo):
    with pytest.raises(ValidationError) as exc:
        vm_create(
            user=user,
            name="x",
            server_pool=pool,
            domain_type="PVHVM",
            os_type="OL6",
            source={"kind": "none"},
            disks=[{"virtual_disk": f.VirtualDiskFactory(repository=repo), "bus": "ide"}],
        )
    assert "disks" in exc.value.message_dict


def test_sparc_vm_in_x86_pool_refused(user, pool):
    with pytest.raises(ValidationError):
        vm_create(
            user=user, name="s", server_pool=pool, domain_type="SPARC", os_type="SOLARIS_SPARC", source={"kind": "none"}
        )
    sparc = f.ServerPoolFactory(architecture="SPARC")
    vm_create(
        user=user, name="s", server_pool=sparc, domain_type="SPARC", os_type="SOLARIS_SPARC", source={"kind": "none"}
    )


def test_create_cpu_memory_bounds_and_huge_pages(user, pool):
    with pytest.raises(ValidationError) as exc:
        vm_create(
            user=user,
            name="x",
            server_pool=pool,
            domain_type="HVM",
            os_type="OL6",
            vcpus=4,
            max_vcpus=2,
            source={"kind": "none"},
        )
    assert "vcpus" in exc.value.message_dict
    with pytest.raises(ValidationError) as exc:
        vm_create(
            user=user,
            name="x",
            server_pool=pool,
            domain_type="PVM",
            os_type="OL6",
            huge_pages=True,
            source={"kind": "pvm_url", "url": "http://m/ol6"},
        )
    assert "deprecated" in exc.value.message_dict["huge_pages"][0]


def test_update_stopped_vm_applies_at_once(user, vm):
    vm = vm_update(vm=vm, user=user, vcpus=3, max_vcpus=4, memory_mib=1024, keymap="fr")
    assert (vm.vcpus, vm.memory_mib, vm.keymap, vm.pending_changes) == (3, 1024, "fr", {})


def test_update_running_vm_runtime_params_are_pending(user, vm):
    vm.status = VmStatus.RUNNING
    vm.save()
    vm = vm_update(vm=vm, user=user, max_vcpus=8, keymap="de", mouse_device="ps2", boot_order=["cdrom"], name="renamed")
    assert vm.name == "renamed"  # not a runtime parameter
    assert vm.pending_changes == {"max_vcpus": 8, "keymap": "de", "mouse_device": "ps2", "boot_order": ["cdrom"]}
    assert vm.max_vcpus == 4 and vm.keymap == "en-us"
    assert not Job.objects.filter(operation="vm.hot_update").exists()


def test_update_validates_the_effective_configuration(user, vm):
    vm.status = VmStatus.RUNNING
    vm.save()
    vm_update(vm=vm, user=user, max_vcpus=2)  # pending: next boot max 2
    with pytest.raises(ValidationError) as exc:
        vm_update(vm=vm, user=user, vcpus=3)  # 3 > the pending maximum 2
    assert "vcpus" in exc.value.message_dict


@pytest.mark.parametrize(
    "os_type,kernel,domain_type,pv,field,value,hot",
    [
        ("OL6", "2.6.39-400.211.1.el6uek", "PVHVM", False, "vcpus", 3, True),
        ("OL6", "2.6.39-400.99.1.el6uek", "PVHVM", False, "vcpus", 3, False),
        ("OL6", "", "PVHVM", False, "memory_mib", 1024, True),
        ("OL6", "", "HVM", False, "memory_mib", 1024, False),
        ("WINDOWS", "", "PVHVM", True, "vcpus", 2, False),
        ("WINDOWS", "", "PVHVM", True, "memory_mib", 1024, False),
        ("SOLARIS_X86", "5.11", "HVM", False, "vcpus", 2, False),
    ],
)
def test_hot_cpu_memory_only_where_7_14_allows(user, pool, repo, os_type, kernel, domain_type, pv, field, value, hot):
    vm = f.VirtualMachineFactory(
        server_pool=pool,
        repository=repo,
        status=VmStatus.RUNNING,
        os_type=os_type,
        guest_kernel=kernel,
        domain_type=domain_type,
        pv_drivers_installed=pv,
    )
    vm = vm_update(vm=vm, user=user, **{field: value})
    jobs = Job.objects.filter(operation="vm.hot_update")
    if hot:
        assert getattr(vm, field) == value and vm.pending_changes == {}
        assert jobs.get().params["changes"] == {field: value}
    else:
        assert vm.pending_changes == {field: value} and not jobs.exists()


def test_hot_vcpus_beyond_running_max_is_pending(user, pool, repo):
    vm = f.VirtualMachineFactory(
        server_pool=pool,
        repository=repo,
        status=VmStatus.RUNNING,
        domain_type="PVHVM",
        guest_kernel="3.8.13-16.el6uek",
        vcpus=1,
        max_vcpus=2,
    )
    vm = vm_update(vm=vm, user=user, max_vcpus=8, vcpus=6)
    assert vm.vcpus == 1 and vm.pending_changes == {"max_vcpus": 8, "vcpus": 6}


def test_unknown_field_refused(user, vm):
    with pytest.raises(ValidationError):
        vm_update(vm=vm, user=user, status="RUNNING")


def test_clone_move_export_migrate_rules_reach_the_services(user, pool, repo, server):
    vm = f.VirtualMachineFactory(server_pool=pool, repository=repo, status=VmStatus.RUNNING, server=server)
    f.VmDiskSlotFactory(vm=vm, slot=0)
    with pytest.raises(Conflict, match="stop it first"):
        vm_move(vm=vm, user=user, customizer=f.CloneCustomizerFactory(vm=vm))
    with pytest.raises(Conflict, match="STOPPED"):
        vm_export(vm=vm, user=user)
    cust = f.CloneCustomizerFactory(vm=vm)
    cust.disks.create(slot=vm.disk_slots.get(), target_repository=repo, clone_type="SPARSE")
    with pytest.raises(Conflict, match="thin clone"):
        vm_clone(vm=vm, user=user, name="c", customizer=cust)
    # a hot clone with thin disks (the default for a running VM) is accepted
    job = vm_clone(vm=vm, user=user, name="hot")
    assert job.params["disks"][0]["clone_type"] == "THIN"
    vm.cpu_pinning = "0"
    vm.save()
    target = f.ServerFactory(server_pool=pool)
    with pytest.raises(Conflict, match="pinned"):
        vm_migrate(vm=vm, user=user, target_server=target)
    target.inbound_migration_lock = True
    target.save()
    vm.cpu_pinning = ""
    vm.save()
    with pytest.raises(Conflict, match="inbound migration lock"):
        vm_migrate(vm=vm, user=user, target_server=target)
    assert vm_migrate(vm=vm, user=user, target_server=target, ha_failover=True).operation == "vm.migrate"


def test_cold_migrate_to_other_pool(user, vm):
    other = f.ServerPoolFactory()
    with pytest.raises(Conflict, match="not presented to that pool"):
        vm_migrate(vm=vm, user=user, target_pool=other)
    vm.repository.server_pools.add(other)
    for slot in vm.disk_slots.exclude(virtual_disk=None):
        slot.virtual_disk.repository.server_pools.add(other)
    job = vm_migrate(vm=vm, user=user, target_pool=other)
    assert job.params == {"vm_id": vm.pk, "target_pool_id": other.pk}
    vm.status = VmStatus.SUSPENDED
    vm.save()
    with pytest.raises(Conflict):
        vm_migrate(vm=vm, user=user, target_pool=other)
