from . import appliances, exports, vms  # noqa: F401  (registers the vm.*, vm.export and appliance.* job operations)
