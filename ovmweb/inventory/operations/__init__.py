from . import vms  # noqa: F401  (registers the vm.* job operations)
