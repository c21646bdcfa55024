from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "ovmweb.inventory"
    label = "inventory"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connects the receiver that re-reads a VM after an action job ends unfinished, in
        # every process that may end jobs (web: abort while queued; workers: failures).
        from django.db.models.signals import post_delete, post_save

        from .models import VirtualMachine, VmDiskSlot, Vnic
        from .services import vm_state  # noqa: F401

        # Each VM's configuration is also kept in its repository (VirtualMachines/<uuid>/vm.json),
        # whichever service changed it: the VM itself, its disk slots or its VNICs.
        def vm_changed(sender, instance, **kwargs) -> None:
            from .services.storage import vm_config_schedule

            vm_id = instance.pk if sender is VirtualMachine else instance.vm_id
            if vm_id is not None and not kwargs.get("raw"):
                vm_config_schedule(vm_id=vm_id)

        post_save.connect(vm_changed, sender=VirtualMachine, weak=False, dispatch_uid="ovmweb-vm-config")

        # However a job ends (run or not): staged uploads are removed, message values scrubbed.
        from ovmweb.jobs.models import Job

        from . import job_endings

        post_save.connect(job_endings.job_saved, sender=Job, weak=False, dispatch_uid="ovmweb-job-ended")
        post_delete.connect(job_endings.job_deleted, sender=Job, weak=False, dispatch_uid="ovmweb-job-deleted")
        for model in (VmDiskSlot, Vnic):
            post_save.connect(vm_changed, sender=model, weak=False, dispatch_uid=f"ovmweb-vm-config-{model.__name__}")
            post_delete.connect(
                vm_changed, sender=model, weak=False, dispatch_uid=f"ovmweb-vm-config-del-{model.__name__}"
            )
