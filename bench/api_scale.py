"""How the VM list of the REST API scales with the inventory.

Fills its own temporary SQLite database with 200 servers and ``--vms`` VMs
(10,000 unless told), each with 2 virtual disks and 2 VNICs, then measures
``GET /api/v1/vms/?limit=100`` on the first and the last page, by offset
(``offset=0``, ``offset=N-100``) and by cursor (``cursor=``, then the cursor a
client holds after the last-but-one page): SQL queries per page (must not grow
with the position) and the median response time. Last line, for keyset paging:
``first_ms=X last_ms=Y queries_per_page=N`` (the last page should cost no more
than 1.5x the first).

    .venv/bin/python bench/api_scale.py --vms 100000
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time

from _common import isolated_django

TMP, _ENV = isolated_django("ovmweb-bench-api-")

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402

SERVERS, REPEAT = 200, 15


def fill(vms_count: int) -> str:
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
                for i in range(vms_count)
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


def measure(client: Client, token: str, url: str, vms_count: int) -> tuple[int, float]:
    headers = {"HTTP_AUTHORIZATION": f"Token {token}"}
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, **headers)
    assert response.status_code == 200, response.content[:500]
    body = response.json()
    assert body.get("count", vms_count) == vms_count and len(body["results"]) == 100, len(body["results"])
    assert all(len(vm["disks"]) == 2 and len(vm["vnics"]) == 2 for vm in body["results"])
    queries = len(ctx.captured_queries)
    times = []
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        client.get(url, **headers)
        times.append((time.perf_counter() - t0) * 1000)
    return queries, statistics.median(times)


def last_page_cursor(vms_count: int) -> str:
    """The ``next`` cursor a client holds after reading every page but the last."""
    from ovmweb.core import keyset
    from ovmweb.inventory.models import VirtualMachine

    row = VirtualMachine.objects.order_by("name", "id").values_list("name", "id")[vms_count - 101]
    return keyset.encode(row, False)


def run(client: Client, token: str, label: str, urls: tuple[str, str], vms_count: int) -> tuple[float, float, int]:
    figures = []
    for where, url in zip(("first", "last"), urls, strict=True):
        queries, median = measure(client, token, url, vms_count)
        figures.append((queries, median))
        print(f"{label} {where} page: queries={queries} median_ms={median:.1f}")
    if figures[0][0] != figures[1][0]:
        print(f"WARNING: {label}: query count depends on the position")
    return figures[0][1], figures[1][1], max(q for q, _ in figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=10_000, help="how many VMs (default 10,000)")
    vms_count = parser.parse_args().vms
    setup_test_environment()
    call_command("migrate", verbosity=0)
    t0 = time.perf_counter()
    token = fill(vms_count)
    print(
        f"filled {SERVERS} servers, {vms_count} VMs, {2 * vms_count} disks, {2 * vms_count} VNICs"
        f" in {time.perf_counter() - t0:.1f}s"
    )
    client = Client()
    base = "/api/v1/vms/?limit=100"
    o_first, o_last, _ = run(client, token, "offset", (base, f"{base}&offset={vms_count - 100}"), vms_count)
    k_urls = (f"{base}&cursor=", f"{base}&cursor={last_page_cursor(vms_count)}")
    first, last, queries = run(client, token, "cursor", k_urls, vms_count)
    print(f"offset: first_ms={o_first:.1f} last_ms={o_last:.1f} (last/first {o_last / o_first:.2f}x)")
    print(f"cursor: last/first {last / first:.2f}x; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"first_ms={first:.1f} last_ms={last:.1f} queries_per_page={queries}")
    connection.close()
    shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
