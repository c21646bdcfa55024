from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "ovmweb.inventory"
    label = "inventory"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connects the receiver that re-reads a VM after an action job ends unfinished, in
        # every process that may end jobs (web: abort while queued; workers: failures).
        from .services import vms  # noqa: F401
