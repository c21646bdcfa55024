from django.apps import AppConfig


class HypervisorConfig(AppConfig):
    name = "ovmweb.hypervisor"
    label = "hypervisor"
