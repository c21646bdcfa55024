from . import appliances, vms  # noqa: F401  (registers the vm.* and appliance.* job operations)
