"""Export of a stopped VM as an OVA: ovmweb's vm.export job against the bare commands.

Self-contained: a temporary SQLite database and var directory, this machine's libvirtd
(qemu:///system) discovered as a ``local`` server, a repository in the temporary
directory, one VM with one qcow2 disk of --size MiB of which --data MiB are random
(incompressible) and the rest zeros. The job runs in-process through the real runner
(``run_pending_jobs``). Baseline, same disk: ``qemu-img convert -O vmdk -o
subformat=streamOptimized`` + ``sha256sum`` + ``tar --format=ustar``, the work the job
does, without ovmweb. Prints the median of --rounds for each, MiB of disk per second,
and, last, ``ratio=X`` (job / bare commands).

    .venv/bin/python bench/export.py [--size 512] [--data 128] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from _common import isolated_django, local_estate

TMP, _ = isolated_django("ovmweb-bench-export-", OVMWEB_EMBEDDED_WORKER="0", OVMWEB_MONITOR="0")

from django.core.management import call_command  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=512, help="disk size, MiB")
    parser.add_argument("--data", type=int, default=128, help="random MiB at the start of the disk")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)

    from django.contrib.auth import get_user_model

    from ovmweb.hypervisor.connections import close_all
    from ovmweb.hypervisor.libvirt import LibvirtDriver
    from ovmweb.inventory.models import VirtualMachine, VmDiskSlot
    from ovmweb.inventory.services import storage, vm_copies
    from ovmweb.inventory.services.repositories import pool_name
    from ovmweb.jobs.testing import run_pending_jobs

    user = get_user_model().objects.create_superuser("bench", password="x")
    pool, server, repo = local_estate(user, TMP)
    repo_path = Path(repo.path)
    disk_job = storage.disk_create(user=user, repository=repo, name="data", size_bytes=args.size << 20)
    run_pending_jobs()
    disk = disk_job.target
    source = repo_path / "VirtualDisks" / disk.volume
    raw = Path(TMP) / "fill.raw"
    with open(raw, "wb") as out, open("/dev/urandom", "rb") as rnd:
        for _ in range(args.data):
            out.write(rnd.read(1 << 20))
        out.truncate(args.size << 20)
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(source)], check=True)
    raw.unlink()
    vm = VirtualMachine.objects.create(
        name="bench-vm", server_pool=pool, repository=repo, memory_mib=256, max_memory_mib=256
    )
    VmDiskSlot.objects.create(vm=vm, slot=0, virtual_disk=disk, bus="sata")

    job_times, bare_times = [], []
    try:
        for _round in range(args.rounds):
            start = time.perf_counter()
            job = vm_copies.vm_export(vm=vm, user=user)
            run_pending_jobs()
            job.refresh_from_db()
            job_times.append(time.perf_counter() - start)
            assert job.status == "SUCCESS", job.error
            Path(job.result["ova"]).unlink()

            work = Path(TMP) / "bare"
            work.mkdir()
            start = time.perf_counter()
            subprocess.run(
                [
                    "qemu-img",
                    "convert",
                    "-f",
                    "qcow2",
                    "-O",
                    "vmdk",
                    "-o",
                    "subformat=streamOptimized",
                    str(source),
                    str(work / "d.vmdk"),
                ],
                check=True,
            )
            (work / "d.ovf").write_text("<Envelope/>")
            subprocess.run(["sha256sum", str(work / "d.ovf"), str(work / "d.vmdk")], check=True, capture_output=True)
            subprocess.run(
                ["tar", "--format=ustar", "-cf", str(Path(TMP) / "bare.ova"), "-C", str(work), "d.ovf", "d.vmdk"],
                check=True,
            )
            bare_times.append(time.perf_counter() - start)
            shutil.rmtree(work)
            Path(TMP, "bare.ova").unlink()
    finally:
        driver = LibvirtDriver("qemu:///system")
        for part in ("disks", "isos", ""):
            driver.pool_undefine(pool_name(repo, part))
        driver.close()
        close_all()
        shutil.rmtree(TMP, ignore_errors=True)
    job_s, bare_s = statistics.median(job_times), statistics.median(bare_times)
    print(f"disk={args.size}MiB random={args.data}MiB rounds={args.rounds}")
    print(f"vm.export job: median {job_s:.2f}s ({args.size / job_s:.0f} MiB/s of disk)")
    print(f"bare qemu-img+sha256sum+tar: median {bare_s:.2f}s ({args.size / bare_s:.0f} MiB/s of disk)")
    print(f"ratio={job_s / bare_s:.2f}")


if __name__ == "__main__":
    main()
