"""Live migration of a VM whose disks are in a local repository (seed 7.7): the rules
on the target repository, the job's plan, and the destination XML's disk paths.
(Real two-server runs belong to the multi-server integration tests.)"""

import xml.etree.ElementTree as ET

import pytest
from django.core.exceptions import ValidationError

from ovmweb.errors import Conflict
from ovmweb.hypervisor import xml as xmlbuild
from ovmweb.inventory import rules
from ovmweb.inventory.choices import VmStatus
from ovmweb.inventory.services.vm_migration import vm_migrate
from tests import factories as f


@pytest.fixture
def two_servers(pool):
    a = f.ServerFactory(server_pool=pool, name="a")
    b = f.ServerFactory(server_pool=pool, name="b")
    repo_a = f.RepositoryFactory(kind="LOCAL", server=a, path="/srv/a")
    repo_b = f.RepositoryFactory(kind="LOCAL", server=b, path="/srv/b")
    return a, b, repo_a, repo_b


@pytest.fixture
def local_vm(pool, two_servers):
    a, _b, repo_a, _repo_b = two_servers
    vm = f.VirtualMachineFactory(server_pool=pool, repository=repo_a, server=a, status=VmStatus.RUNNING)
    f.VmDiskSlotFactory(vm=vm, slot=0)
    return vm


def test_check_storage_migration(two_servers, local_vm, pool):
    a, b, repo_a, repo_b = two_servers
    with pytest.raises(Conflict, match="no repository to receive them"):
        rules.check_storage_migration(vm=local_vm, target=b, target_repository=None)
    with pytest.raises(Conflict, match="local to another server"):
        rules.check_storage_migration(vm=local_vm, target=b, target_repository=repo_a)
    with pytest.raises(Conflict, match="not presented"):
        rules.check_storage_migration(vm=local_vm, target=b, target_repository=f.RepositoryFactory())
    rules.check_storage_migration(vm=local_vm, target=b, target_repository=repo_b)
    rules.check_storage_migration(vm=local_vm, target=b, target_repository=f.RepositoryFactory(server_pools=[pool]))


def test_job_plans_a_copy_into_the_targets_local_repository(two_servers, local_vm, user):
    _a, b, _repo_a, repo_b = two_servers
    job = vm_migrate(vm=local_vm, user=user, target_server=b)
    assert job.operation == "vm.migrate"
    assert job.params == {
        "vm_id": local_vm.pk,
        "target_server_id": b.pk,
        "storage_migration": True,
        "target_repository_id": repo_b.pk,
    }
    # Naming the repository is enough: its server is the target.
    job.delete()
    from ovmweb.jobs.models import ObjectLock

    ObjectLock.objects.all().delete()
    assert vm_migrate(vm=local_vm, user=user, target_repository=repo_b).params["target_server_id"] == b.pk


def test_needs_a_target_and_a_repository_there(two_servers, local_vm, user, pool):
    _a, _b, _repo_a, _repo_b = two_servers
    with pytest.raises(ValidationError, match="name the server"):
        vm_migrate(vm=local_vm, user=user)
    c = f.ServerFactory(server_pool=pool, name="c")
    with pytest.raises(Conflict, match="no repository to receive them"):
        vm_migrate(vm=local_vm, user=user, target_server=c)


def test_pinned_vm_still_refused(two_servers, local_vm, user):
    local_vm.cpu_pinning = "0-1"
    local_vm.save()
    with pytest.raises(Conflict, match="pinned"):
        vm_migrate(vm=local_vm, user=user, target_server=two_servers[1])


def test_destination_xml_gets_the_target_paths():
    document = (
        "<domain><devices><disk type='file' device='disk'><source file='/srv/a/VirtualDisks/x.qcow2'/>"
        "<target dev='vda'/></disk><disk type='file' device='cdrom'><source file='/srv/s/ISOs/i.iso'/>"
        "<target dev='sda'/></disk></devices></domain>"
    )
    out = ET.fromstring(
        xmlbuild.rewrite_disk_sources(document, {"/srv/a/VirtualDisks/x.qcow2": "/srv/b/VirtualDisks/x.qcow2"})
    )
    assert [s.get("file") for s in out.iter("source")] == ["/srv/b/VirtualDisks/x.qcow2", "/srv/s/ISOs/i.iso"]
