"""The pure rules of rules.py, each with the case that breaks it."""

import pytest
from django.core.exceptions import ValidationError

from ovmweb.errors import Conflict
from ovmweb.inventory import hot_rules, rules
from ovmweb.inventory.choices import Architecture, CloneType, DomainType, OsType, VmStatus
from tests import factories as f

# 7.1 ------------------------------------------------------------------------


@pytest.mark.parametrize("os_type", [OsType.ORACLE_LINUX_7, OsType.RHEL_7])
def test_pvm_refused_for_ol7_and_rhel7_with_reason(os_type):
    with pytest.raises(ValidationError) as exc:
        rules.check_domain_type(domain_type=DomainType.PVM, os_type=os_type, pool_architecture=Architecture.X86)
    assert "cannot run as a PVM guest" in exc.value.message_dict["domain_type"][0]


def test_pvm_allowed_for_ol6():
    rules.check_domain_type(
        domain_type=DomainType.PVM, os_type=OsType.ORACLE_LINUX_6, pool_architecture=Architecture.X86
    )


def test_sparc_only_in_sparc_pool_and_x86_types_refused_there():
    with pytest.raises(ValidationError, match="SPARC server pool"):
        rules.check_domain_type(
            domain_type=DomainType.SPARC, os_type=OsType.SOLARIS_SPARC, pool_architecture=Architecture.X86
        )
    with pytest.raises(ValidationError, match="runs only OVM/SPARC"):
        rules.check_domain_type(
            domain_type=DomainType.HVM, os_type=OsType.SOLARIS_SPARC, pool_architecture=Architecture.SPARC
        )
    rules.check_domain_type(
        domain_type=DomainType.SPARC, os_type=OsType.SOLARIS_SPARC, pool_architecture=Architecture.SPARC
    )


# 7.2 ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,domain_type,ok",
    [
        ("iso", DomainType.HVM, True),
        ("iso", DomainType.PVHVM, True),
        ("iso", DomainType.PVM, False),
        ("pvm_url", DomainType.PVM, True),
        ("pvm_url", DomainType.HVM, False),
        ("pvm_url", DomainType.PVHVM, False),
        ("template", DomainType.PVM, True),
        ("template", DomainType.HVM, True),
        ("appliance", DomainType.PVM, True),
        ("clone", DomainType.PVHVM, True),
    ],
)
def test_install_source_table(kind, domain_type, ok):
    call = lambda: rules.check_install_source(domain_type=domain_type, kind=kind, url="nfs://srv/ol6")  # noqa: E731
    if ok:
        call()
    else:
        with pytest.raises(ValidationError) as exc:
            call()
        assert "source" in exc.value.message_dict


@pytest.mark.parametrize("url", ["file:///tmp/x", "ssh://h/x", "http://", "not a url", "", "javascript:alert(1)"])
def test_pvm_url_scheme_validated(url):
    with pytest.raises(ValidationError) as exc:
        rules.check_install_source(domain_type=DomainType.PVM, kind="pvm_url", url=url)
    assert "pvm_boot_url" in exc.value.message_dict


@pytest.mark.parametrize("url", ["nfs://10.0.0.1/export/ol6", "http://mirror/ol6/", "ftp://mirror/ol6", "HTTPS://m/x"])
def test_pvm_url_accepted(url, settings):
    settings.OVMWEB_IMPORT_ALLOWED_NETWORKS = ["10.0.0.0/8"]  # an internal mirror, allowed
    rules.check_install_source(domain_type=DomainType.PVM, kind="pvm_url", url=url)


def test_paravirtual_domains_need_virtio_disks():
    for dt in (DomainType.PVHVM, DomainType.PVM):
        with pytest.raises(ValidationError, match="paravirtual"):
            rules.check_paravirtual_disks(domain_type=dt, disk_buses=["virtio", "sata"])
        rules.check_paravirtual_disks(domain_type=dt, disk_buses=["virtio"])
    rules.check_paravirtual_disks(domain_type=DomainType.HVM, disk_buses=["ide", "sata"])


def test_vnic_model_by_domain_type():
    assert rules.vnic_model_for(DomainType.HVM) == "e1000"
    assert rules.vnic_model_for(DomainType.PVHVM) == "virtio"
    assert rules.vnic_model_for(DomainType.PVM) == "virtio"


# 7.13 -----------------------------------------------------------------------


def test_cpu_and_memory_bounds():
    rules.check_cpu_memory(vcpus=1, max_vcpus=1, memory_mib=512, max_memory_mib=512)
    with pytest.raises(ValidationError) as exc:
        rules.check_cpu_memory(vcpus=0, max_vcpus=2, memory_mib=512, max_memory_mib=512)
    assert "vcpus" in exc.value.message_dict
    with pytest.raises(ValidationError) as exc:
        rules.check_cpu_memory(vcpus=3, max_vcpus=2, memory_mib=1024, max_memory_mib=512)
    assert set(exc.value.message_dict) == {"vcpus", "memory_mib"}


# 7.14 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kernel,ok",
    [
        ("2.6.39-400.211.1.el6uek", True),
        ("2.6.39-400.211.2.el6uek", True),
        ("2.6.39-400.1000.1.el6uek", True),  # string compare would say "1000" < "211"
        ("3.8.13-16.2.1.el6uek", True),
        ("4.14.35-1902.el7uek", True),
        ("2.6.39-400.99.1.el6uek", False),  # string compare would say "99" > "211"
        ("2.6.39-400.211.0.el6uek", False),
        ("2.6.32-431.el6", False),
        ("", False),
    ],
)
def test_oracle_linux_hot_vcpu_kernel_threshold(kernel, ok):
    why = hot_rules.hot_change_refusal(
        os_type=OsType.ORACLE_LINUX_6, component=hot_rules.Hot.VCPU, domain_type=DomainType.PVHVM, guest_kernel=kernel
    )
    assert (why is None) is ok
    if not ok:
        assert "2.6.39-400.211.1" in why


def test_kernel_version_key_is_numeric():
    assert hot_rules.kernel_version_key("2.6.39-400.99.1") < hot_rules.kernel_version_key("2.6.39-400.211.1")


@pytest.mark.parametrize(
    "os_type,domain_type,kernel,pv,component,ok",
    [
        (OsType.ORACLE_LINUX_6, DomainType.PVM, "", False, hot_rules.Hot.MEMORY, True),
        (OsType.ORACLE_LINUX_6, DomainType.PVHVM, "", False, hot_rules.Hot.MEMORY, True),
        (OsType.ORACLE_LINUX_6, DomainType.HVM, "", False, hot_rules.Hot.MEMORY, False),
        (OsType.ORACLE_LINUX_6, DomainType.HVM, "", False, hot_rules.Hot.DISK, True),
        (OsType.ORACLE_LINUX_6, DomainType.HVM, "", False, hot_rules.Hot.VNIC, True),
        (OsType.SOLARIS_SPARC, DomainType.SPARC, "", False, hot_rules.Hot.VCPU, True),
        (OsType.SOLARIS_SPARC, DomainType.SPARC, "", False, hot_rules.Hot.MEMORY, True),
        (OsType.SOLARIS_SPARC, DomainType.SPARC, "", False, hot_rules.Hot.DISK, True),
        (OsType.SOLARIS_X86, DomainType.HVM, "5.11", False, hot_rules.Hot.VCPU, False),
        (OsType.SOLARIS_X86, DomainType.HVM, "5.11", False, hot_rules.Hot.MEMORY, False),
        (OsType.SOLARIS_X86, DomainType.HVM, "5.11", False, hot_rules.Hot.DISK, True),
        (OsType.SOLARIS_X86, DomainType.HVM, "5.10", False, hot_rules.Hot.DISK, False),
        (OsType.SOLARIS_X86, DomainType.HVM, "11.4", False, hot_rules.Hot.DISK, True),
        (OsType.SOLARIS_X86, DomainType.HVM, "5.11", False, hot_rules.Hot.VNIC, True),
        (OsType.SOLARIS_X86, DomainType.HVM, "5.11", False, hot_rules.Hot.CDROM_REMOVE, False),
        (OsType.WINDOWS, DomainType.PVHVM, "", True, hot_rules.Hot.VCPU, False),
        (OsType.WINDOWS, DomainType.PVHVM, "", True, hot_rules.Hot.MEMORY, False),
        (OsType.WINDOWS, DomainType.PVHVM, "", True, hot_rules.Hot.DISK, True),
        (OsType.WINDOWS, DomainType.PVHVM, "", False, hot_rules.Hot.DISK, False),
        (OsType.WINDOWS, DomainType.PVHVM, "", True, hot_rules.Hot.VNIC, True),
        (OsType.WINDOWS, DomainType.HVM, "", False, hot_rules.Hot.VNIC, False),
    ],
)
def test_hot_change_matrix(os_type, domain_type, kernel, pv, component, ok):
    why = hot_rules.hot_change_refusal(
        os_type=os_type, component=component, domain_type=domain_type, guest_kernel=kernel, pv_drivers=pv
    )
    assert (why is None) is ok, why


# 7.15 -----------------------------------------------------------------------


def test_huge_pages_refused_for_pvm_with_reason_and_for_hvm():
    with pytest.raises(ValidationError, match="deprecated for PVM"):
        rules.check_huge_pages(domain_type=DomainType.PVM, huge_pages=True)
    with pytest.raises(ValidationError, match="by default"):
        rules.check_huge_pages(domain_type=DomainType.HVM, huge_pages=True)
    rules.check_huge_pages(domain_type=DomainType.PVM, huge_pages=False)


# 7.4 MAC --------------------------------------------------------------------


@pytest.mark.parametrize(
    "start,end,field",
    [
        ("00:21:f6:00:00:zz", "00:21:f6:ff:ff:ff", "start"),
        ("00:21:f6:00:00", "00:21:f6:ff:ff:ff", "start"),
        ("01:21:f6:00:00:00", "01:21:f6:ff:ff:ff", "start"),  # multicast bit
        ("00:21:f6:00:00:00", "03:00:00:00:00:00", "end"),  # multicast end
        ("00:21:f6:ff:00:00", "00:21:f6:00:00:00", "end"),  # reversed
    ],
)
def test_bad_mac_ranges(start, end, field):
    with pytest.raises(ValidationError) as exc:
        rules.check_mac_range(start, end)
    assert field in exc.value.message_dict


def test_mac_range_normalised():
    assert rules.check_mac_range("00-21-F6-00-00-00", "00:21:f6:00:00:ff") == ("00:21:f6:00:00:00", "00:21:f6:00:00:ff")


# 7.10 -----------------------------------------------------------------------


def test_message_limits():
    rules.check_message(key="k" * 256, value="v" * 1024, log=True)
    rules.check_message(key="k", value="v" * 8192, log=False)
    with pytest.raises(ValidationError) as exc:
        rules.check_message(key="k" * 257, value="", log=True)
    assert "key" in exc.value.message_dict
    with pytest.raises(ValidationError) as exc:
        rules.check_message(key="k", value="v" * 1025, log=True)
    assert "value" in exc.value.message_dict
    with pytest.raises(ValidationError):
        rules.check_message(key="k", value="v" * 8193, log=False)
    # bytes, not characters: 129 two-byte characters are 258 bytes
    with pytest.raises(ValidationError):
        rules.check_message(key="é" * 129, value="", log=True)


# 7.7 / 7.16 / 7.6 -----------------------------------------------------------


@pytest.fixture
def two_servers(db):
    pool = f.ServerPoolFactory()
    return pool, f.ServerFactory(server_pool=pool), f.ServerFactory(server_pool=pool)


def test_live_migration_allowed_between_identical_servers(two_servers):
    pool, a, b = two_servers
    vm = f.VirtualMachineFactory(server_pool=pool, server=a, status=VmStatus.RUNNING)
    rules.check_live_migration(vm=vm, source=a, target=b)


def test_pinned_vm_may_not_live_migrate(two_servers):
    pool, a, b = two_servers
    vm = f.VirtualMachineFactory(server_pool=pool, server=a, status=VmStatus.RUNNING, cpu_pinning="0-1")
    with pytest.raises(Conflict, match="pinned"):
        rules.check_live_migration(vm=vm, source=a, target=b)


def test_live_migration_other_pool_refused(two_servers):
    pool, a, _b = two_servers
    other = f.ServerFactory()
    vm = f.VirtualMachineFactory(server_pool=pool, server=a, status=VmStatus.RUNNING)
    with pytest.raises(Conflict, match="one server pool"):
        rules.check_live_migration(vm=vm, source=a, target=other)


def test_live_migration_cpu_mismatch_unless_same_group(two_servers):
    pool, a, b = two_servers
    b.cpu_model = 63
    b.save()
    vm = f.VirtualMachineFactory(server_pool=pool, server=a, status=VmStatus.RUNNING)
    with pytest.raises(Conflict, match="CPUs are not compatible"):
        rules.check_live_migration(vm=vm, source=a, target=b)
    group = f.ProcessorCompatibilityGroupFactory()
    a.compatibility_group = b.compatibility_group = group
    rules.check_live_migration(vm=vm, source=a, target=b)


def test_live_migration_to_older_hypervisor_refused(two_servers):
    pool, a, b = two_servers
    a.qemu_version, b.qemu_version = "7.10.0", "7.2.0"  # numeric, not string, comparison
    vm = f.VirtualMachineFactory(server_pool=pool, server=a, status=VmStatus.RUNNING)
    with pytest.raises(Conflict, match="older QEMU"):
        rules.check_live_migration(vm=vm, source=a, target=b)
    rules.check_live_migration(vm=vm, source=b, target=a)


def test_live_migration_with_local_iso_refused(two_servers):
    pool, a, b = two_servers
    local = f.RepositoryFactory(kind="LOCAL", server=a)
    vm = f.VirtualMachineFactory(server_pool=pool, server=a, status=VmStatus.RUNNING)
    f.CdromSlotFactory(vm=vm, iso=f.IsoFileFactory(repository=local))
    with pytest.raises(Conflict, match="local repository"):
        rules.check_live_migration(vm=vm, source=a, target=b)


def test_cold_migration_needs_stopped_and_shared_storage(two_servers):
    pool, a, _b = two_servers
    target = f.ServerPoolFactory()
    vm = f.VirtualMachineFactory(server_pool=pool, status=VmStatus.RUNNING)
    with pytest.raises(Conflict, match="STOPPED"):
        rules.check_cold_migration(vm=vm, target_pool=target)
    vm.status = VmStatus.STOPPED
    rules.check_cold_migration(vm=vm, target_pool=target)
    vm.repository = f.RepositoryFactory(kind="LOCAL", server=a)
    with pytest.raises(Conflict, match="local repository"):
        rules.check_cold_migration(vm=vm, target_pool=target)


def test_move_rules(two_servers):
    _pool, a, b = two_servers
    local_a = f.RepositoryFactory(kind="LOCAL", server=a)
    local_b = f.RepositoryFactory(kind="LOCAL", server=b)
    shared = f.RepositoryFactory()
    vm = f.VirtualMachineFactory(repository=local_a, status=VmStatus.RUNNING)
    with pytest.raises(Conflict, match="stop it first"):
        rules.check_move(vm=vm, target_repositories=[shared])
    vm.status = VmStatus.STOPPED
    rules.check_move(vm=vm, target_repositories=[local_b])  # no disks: allowed
    f.VmDiskSlotFactory(vm=vm)
    with pytest.raises(Conflict, match="through a shared repository"):
        rules.check_move(vm=vm, target_repositories=[local_b])
    rules.check_move(vm=vm, target_repositories=[shared])


def test_export_only_stopped(db):
    vm = f.VirtualMachineFactory(status=VmStatus.SUSPENDED)
    with pytest.raises(Conflict, match="SUSPENDED"):
        rules.check_export(vm)
    vm.status = VmStatus.STOPPED
    rules.check_export(vm)


def test_hot_clone_only_thin(db):
    vm = f.VirtualMachineFactory(status=VmStatus.RUNNING)
    rules.check_clone(vm=vm, clone_types=[CloneType.THIN, CloneType.THIN])
    with pytest.raises(Conflict, match="thin clone"):
        rules.check_clone(vm=vm, clone_types=[CloneType.THIN, CloneType.SPARSE])
    vm.status = VmStatus.STOPPED
    rules.check_clone(vm=vm, clone_types=[CloneType.NON_SPARSE])
    vm.status = VmStatus.SUSPENDED
    with pytest.raises(Conflict):
        rules.check_clone(vm=vm, clone_types=[])
