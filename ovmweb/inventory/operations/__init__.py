# Registers the vm.*, vm.export and appliance.* job operations.
from . import appliances, exports, vm_copies, vm_devices, vm_migration, vms  # noqa: F401
