"""How the VM list of the REST API scales with the inventory.

Fills its own temporary SQLite database with 200 servers and 10,000 VMs, each
with 2 virtual disks and 2 VNICs, then measures ``GET /api/v1/vms/?limit=100``
at offsets 0 and 9,900: SQL queries per page (must not grow with the offset)
and the median response time. Last line: ``queries_per_page=N median_ms=M``.

    .venv/bin/python bench/api_scale.py
"""

from __future__ import annotations

import shutil
import statistics
import time

from _common import isolated_django

TMP, _ENV = isolated_django("ovmweb-bench-api-")

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402

SERVERS, VMS, REPEAT = 200, 10_000, 15


def fill() -> str:
    from django.contrib.auth import get_user_model

    from ovmweb.accounts.tokens import create_token
    from ovmweb.inventory import choices
    from ovmweb.inventory.models import (
        Network,
        Repository,
        Server,
        ServerPool,
        VirtualDisk,
        VirtualMachine,
        VmDiskSlot,
        Vnic,
    )

    with transaction.atomic():
        user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench-pw-123")
        _, token = create_token(user=user)
        pools = ServerPool.objects.bulk_create([ServerPool(name=f"pool-{i}") for i in range(10)])
        servers = Server.objects.bulk_create(
            [
                Server(
                    name=f"server-{i}",
                    hostname=f"server-{i}.example.com",
                    server_pool=pools[i % 10],
                    status=choices.ServerStatus.RUNNING,
                    cpu_cores=16,
                    memory_mib=262144,
                )
                for i in range(SERVERS)
            ]
        )
        repo = Repository.objects.create(name="repo", kind=choices.RepositoryKind.SHARED, path="/srv/repo")
        repo.server_pools.set(pools)
        net = Network.objects.create(name="vm-net", libvirt_network="default")
        vms = VirtualMachine.objects.bulk_create(
            [
                VirtualMachine(
                    name=f"vm-{i:05d}",
                    server_pool=pools[i % 10],
                    server=servers[i % SERVERS],
                    repository=repo,
                    status=choices.VmStatus.RUNNING if i % 2 else choices.VmStatus.STOPPED,
                    max_vcpus=4,
                    max_memory_mib=2048,
                )
                for i in range(VMS)
            ],
            batch_size=2000,
        )
        disks = VirtualDisk.objects.bulk_create(
            [
                VirtualDisk(
                    name=f"{vm.name}-disk{d}", repository=repo, volume=f"{vm.uuid}-{d}.qcow2", size_bytes=10 << 30
                )
                for vm in vms
                for d in range(2)
            ],
            batch_size=2000,
        )
        VmDiskSlot.objects.bulk_create(
            [VmDiskSlot(vm=vms[i // 2], slot=i % 2, virtual_disk=disk) for i, disk in enumerate(disks)],
            batch_size=2000,
        )
        n = 0
        vnics = []
        for vm in vms:
            for position in range(2):
                n += 1
                mac = f"00:21:f6:{(n >> 16) & 0xFF:02x}:{(n >> 8) & 0xFF:02x}:{n & 0xFF:02x}"
                vnics.append(Vnic(vm=vm, mac=mac, network=net, position=position))
        Vnic.objects.bulk_create(vnics, batch_size=2000)
    return token


def measure(client: Client, token: str, offset: int) -> tuple[int, float]:
    url = f"/api/v1/vms/?limit=100&offset={offset}"
    headers = {"HTTP_AUTHORIZATION": f"Token {token}"}
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, **headers)
    assert response.status_code == 200, response.content[:500]
    body = response.json()
    assert body["count"] == VMS and len(body["results"]) == 100, (body["count"], len(body["results"]))
    assert all(len(vm["disks"]) == 2 and len(vm["vnics"]) == 2 for vm in body["results"])
    queries = len(ctx.captured_queries)
    times = []
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        client.get(url, **headers)
        times.append((time.perf_counter() - t0) * 1000)
    return queries, statistics.median(times)


def main() -> None:
    setup_test_environment()
    call_command("migrate", verbosity=0)
    t0 = time.perf_counter()
    token = fill()
    print(f"filled {SERVERS} servers, {VMS} VMs, {2 * VMS} disks, {2 * VMS} VNICs in {time.perf_counter() - t0:.1f}s")
    client = Client()
    results = {}
    for offset in (0, VMS - 100):
        queries, median = measure(client, token, offset)
        results[offset] = (queries, median)
        print(f"offset={offset} queries={queries} median_ms={median:.1f}")
    queries = max(q for q, _ in results.values())
    median = max(m for _, m in results.values())
    if len({q for q, _ in results.values()}) != 1:
        print("WARNING: query count depends on the offset")
    print(f"queries_per_page={queries} median_ms={median:.1f}")
    connection.close()
    shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
