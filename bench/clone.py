"""Thin clone of a stopped VM through the real service and job path: ``vm_copies.vm_clone``
with a clone customizer asking THIN for the disk, the ``vm.clone`` job run in-process
(``run_pending_jobs``) against this machine's libvirtd (qemu:///system). The source disk
is a sparse qcow2 of 1 GiB and one of 10 GiB, each with --data MiB written at its start.

A thin clone freezes the source's file as a read-only base and puts two overlays on it:
O(1), so both figures should be close (the time is the job's bookkeeping and two
``qemu-img create``), whatever the size. Prints the median of --rounds for each size:

    thin_clone_s_1g=X thin_clone_s_10g=Y

    .venv/bin/python bench/clone.py [--data 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from _common import isolated_django, local_estate

TMP, _ = isolated_django("ovmweb-bench-clone-", OVMWEB_EMBEDDED_WORKER="0", OVMWEB_MONITOR="0")

from django.core.management import call_command  # noqa: E402

GIB = 1 << 30


def _source_vm(user, pool, repo, size: int, data_mib: int):
    from ovmweb.inventory.models import CloneCustomizer, CloneCustomizerDisk, VirtualMachine, VmDiskSlot
    from ovmweb.inventory.services import storage
    from ovmweb.jobs.testing import run_pending_jobs

    disk_job = storage.disk_create(user=user, repository=repo, name=f"src-{size // GIB}g", size_bytes=size)
    run_pending_jobs()
    disk = disk_job.target
    image = Path(repo.path) / "VirtualDisks" / disk.volume
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", f"write -P 0x5a 0 {data_mib}M", str(image)], check=True, capture_output=True
    )
    vm = VirtualMachine.objects.create(
        name=f"bench-{size // GIB}g", server_pool=pool, repository=repo, memory_mib=256, max_memory_mib=256
    )
    slot = VmDiskSlot.objects.create(vm=vm, slot=0, virtual_disk=disk, bus="sata")
    customizer = CloneCustomizer.objects.create(name="thin", vm=vm)
    CloneCustomizerDisk.objects.create(customizer=customizer, slot=slot, target_repository=repo, clone_type="THIN")
    return vm, customizer


def _time_clones(user, vm, customizer, rounds: int) -> float:
    from ovmweb.inventory.services import vm_copies
    from ovmweb.jobs.testing import run_pending_jobs

    times = []
    for index in range(rounds):
        start = time.perf_counter()
        job = vm_copies.vm_clone(vm=vm, user=user, name=f"{vm.name}-c{index}", customizer=customizer)
        run_pending_jobs()
        times.append(time.perf_counter() - start)
        job.refresh_from_db()
        assert job.status == "SUCCESS", job.error
        disk = job.target.disk_slots.get(slot=0).virtual_disk
        assert disk.backing_disk is not None and disk.backing_disk.thin_base
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=int, default=64, help="MiB written at the start of each source disk")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)

    from django.contrib.auth import get_user_model

    from ovmweb.hypervisor.connections import close_all
    from ovmweb.hypervisor.libvirt import LibvirtDriver
    from ovmweb.inventory.services.repositories import pool_name

    user = get_user_model().objects.create_superuser("bench", password="x")
    pool, _server, repo = local_estate(user, TMP)
    results = {}
    try:
        for size in (GIB, 10 * GIB):
            vm, customizer = _source_vm(user, pool, repo, size, args.data)
            results[size] = _time_clones(user, vm, customizer, args.rounds)
    finally:
        driver = LibvirtDriver("qemu:///system")
        for part in ("disks", "isos", ""):
            driver.pool_undefine(pool_name(repo, part))
        driver.close()
        close_all()
        shutil.rmtree(TMP, ignore_errors=True)
    print(f"path=vm_copies.vm_clone + vm.clone job (in-process runner) rounds={args.rounds} data={args.data}MiB")
    print(f"thin_clone_s_1g={results[GIB]:.3f} thin_clone_s_10g={results[10 * GIB]:.3f}")


if __name__ == "__main__":
    main()
