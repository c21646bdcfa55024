import pytest

from tests import factories as f


@pytest.mark.django_db
def test_factories_build_a_consistent_inventory():
    user = f.UserFactory()
    assert user.check_password("pw-test-123")
    disk_slot = f.VmDiskSlotFactory()
    cdrom = f.CdromSlotFactory(vm=disk_slot.vm, slot=5)
    vnic = f.VnicFactory(vm=disk_slot.vm)
    repo = f.RepositoryFactory(server_pools=[disk_slot.vm.server_pool])
    assert list(repo.server_pools.all()) == [disk_slot.vm.server_pool]
    # Slot contents live in the VM's own repository.
    assert disk_slot.virtual_disk.repository == disk_slot.vm.repository
    assert cdrom.iso.repository == disk_slot.vm.repository
    assert not vnic.mac.startswith("00:21:f6")
    assert f.SuperUserFactory().is_superuser
