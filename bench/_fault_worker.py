"""The job worker of bench/storage_faults.py: ``manage.py runjobworker --batch`` (recovery on
start, as any worker) in its own process, on the bench's database (the environment comes
from the bench), with every libvirt driver call announced on stdout before it is made
(``@@step N name``; step 1 is the job's start), so that the bench can SIGKILL this process
at a chosen moment.

``OVMWEB_FAULT_AT`` / ``OVMWEB_FAULT_KIND`` (ssh, full, libvirt) make the ``AT``-th driver
call fail that way instead; a ``kill`` is done from outside, by the bench.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django

django.setup()

from django.core.management import call_command  # noqa: E402

# Driver calls that count as steps (bench/storage_faults.py's STEPS).
STEPS = (
    "volume_create",
    "volume_clone",
    "volume_delete",
    "volume_info",
    "volume_protect",
    "pool_refresh",
    "define",
    "undefine",
    "migrate",
    "disks_backup",
    "migrate_with_storage",
)

JOBS = ("vm.clone", "vm.move", "vm.migrate")


class Injector:
    def __init__(self, at: int | None, fault: str | None):
        self.count, self.at, self.fault = 0, at, fault

    def step(self, name: str) -> None:
        from ovmweb.errors import ConnectionFailed, OperationFailed

        self.count += 1
        say(f"@@step {self.count} {name}")
        if name == "job" or self.count != self.at or self.fault not in ("ssh", "full", "libvirt"):
            return
        if self.fault == "ssh":
            raise ConnectionFailed(f"injected: SSH connection dropped during {name}")
        if self.fault == "full":
            raise OperationFailed(f"injected: cannot {name}: No space left on device")
        raise OperationFailed(f"injected: internal error in {name}")


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def install(injector: Injector) -> None:
    """Each storage job's start is a step too (a kill may land before its first driver
    call); its end is announced (``@@end``), so that the bench knows how long the last step lasts."""
    from ovmweb.hypervisor.libvirt import LibvirtDriver
    from ovmweb.jobs import registry

    registry.autodiscover()
    for op in JOBS:
        real_op = registry._operations[op]

        def job(ctx, *args, _real=real_op, **kwargs):
            injector.step("job")
            try:
                return _real(ctx, *args, **kwargs)
            finally:
                say("@@end")

        registry._operations[op] = job

    for name in STEPS:
        real = getattr(LibvirtDriver, name, None)
        if real is None:
            continue

        def wrapped(self, *args, _real=real, _name=name, **kwargs):
            injector.step(_name)
            return _real(self, *args, **kwargs)

        setattr(LibvirtDriver, name, wrapped)


if __name__ == "__main__":
    at = os.environ.get("OVMWEB_FAULT_AT")
    install(Injector(int(at) if at else None, os.environ.get("OVMWEB_FAULT_KIND")))
    call_command("runjobworker", "--batch", "--interval", "0.05", "--threads", "1")
