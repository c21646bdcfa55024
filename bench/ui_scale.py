"""UI at scale: server time and SQL query count of the virtual machine perspective
page (first page, last page by cursor and by offset, a sorted page) and of a
search, with ``--vms`` VMs (10,000 unless told, or BENCH_VMS) in a temporary
SQLite database. Prints figures; last line, for the keyset (cursor) pages the
table's links follow: ``first_ms=X last_ms=Y queries_per_page=N`` (medians over
runs; the last page should cost no more than 1.5x the first).

    .venv/bin/python bench/ui_scale.py --vms 100000
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from _common import isolated_django

TMP, _ENV = isolated_django("ovmweb-ui-bench-", OVMWEB_ALLOWED_HOSTS="testserver,127.0.0.1")

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402

from ovmweb.core import keyset  # noqa: E402
from ovmweb.inventory import choices  # noqa: E402
from ovmweb.inventory.models import Repository, Server, ServerPool, VirtualMachine  # noqa: E402

_parser = argparse.ArgumentParser(description="VM perspective page times at scale")
_parser.add_argument("--vms", type=int, default=int(os.environ.get("BENCH_VMS", "10000")))
N_VMS = _parser.parse_args().vms
RUNS = int(os.environ.get("BENCH_RUNS", "15"))


def populate() -> None:
    pools = [ServerPool.objects.create(name=f"pool-{i}") for i in range(5)]
    servers = Server.objects.bulk_create(
        Server(
            name=f"hv-{i:03d}",
            hostname=f"hv-{i:03d}.example.com",
            server_pool=pools[i % 5],
            status=choices.ServerStatus.RUNNING,
            cpu_cores=32,
            memory_mib=262144,
        )
        for i in range(50)
    )
    repo = Repository.objects.create(name="shared", kind=choices.RepositoryKind.SHARED, path="/srv/repo")
    statuses = [choices.VmStatus.RUNNING, choices.VmStatus.STOPPED, choices.VmStatus.SUSPENDED]
    VirtualMachine.objects.bulk_create(
        (
            VirtualMachine(
                name=f"vm-{i:05d}",
                server_pool=pools[i % 5],
                repository=repo,
                server=servers[i % 50] if i % 3 != 1 else None,
                status=statuses[i % 3],
                vcpus=1 + i % 4,
                max_vcpus=4,
                memory_mib=512,
                max_memory_mib=1024,
                os_type=choices.OsType.ORACLE_LINUX_6,
            )
            for i in range(N_VMS)
        ),
        batch_size=1000,
    )


def last_page_next_cursor() -> str:
    """The Next link's cursor on the last-but-one page of 50 (the table's default order)."""
    row = VirtualMachine.objects.order_by("name", "id").values_list("name", "id")[N_VMS - 51]
    return keyset.encode(row, False)


def measure(client: Client, url: str, **headers) -> tuple[float, int]:
    times, queries = [], 0
    client.get(url, **headers)  # warm caches (templates, content types)
    for _ in range(RUNS):
        with CaptureQueriesContext(connection) as ctx:
            t0 = time.perf_counter()
            response = client.get(url, **headers)
            times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, (url, response.status_code)
        queries = len(ctx.captured_queries)
    return statistics.median(times), queries


def main() -> None:
    setup_test_environment()
    call_command("migrate", verbosity=0, interactive=False)
    t0 = time.perf_counter()
    populate()
    print(f"populated {VirtualMachine.objects.count()} VMs in {time.perf_counter() - t0:.1f} s ({TMP})")
    admin = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench-pw-123")
    client = Client()
    client.force_login(admin)
    cases = [
        ("vm perspective, page 1", "/vms/"),
        ("vm perspective, last page (cursor)", f"/vms/?cursor={last_page_next_cursor()}"),
        ("vm perspective, last page (Last link)", f"/vms/?cursor={keyset.last_page_cursor()}"),
        ("vm perspective, last page (offset)", f"/vms/?page={N_VMS // 50}"),
        ("vm perspective, sorted by server desc", "/vms/?sort=-server&page=37"),
        ("vm table fragment (htmx), page 100", "/vms/?page=100", {"HTTP_HX_REQUEST": "true"}),
        ("search 'vm-0999'", "/vms/?q=vm-0999"),
        ("search no match", "/vms/?q=nothing-like-this"),
    ]
    results = {}
    for label, url, *headers in cases:
        ms, n = measure(client, url, **(headers[0] if headers else {}))
        results[label] = (ms, n)
        print(f"{label:44s} median {ms:7.1f} ms  queries {n}")
    # The machine is shared: say how busy it was, the figures scale with it.
    l1, l5, l15 = os.getloadavg()
    print(f"load average (1/5/15 min): {l1:.2f} {l5:.2f} {l15:.2f} on {os.cpu_count()} CPUs")
    ms, n = results["vm perspective, page 1"]
    s_ms, s_n = results["search 'vm-0999'"]
    print(f"search_ms={s_ms:.1f} search_queries={s_n}")
    print(f"vm_page_ms={ms:.1f} queries={n}")
    last_ms, last_n = results["vm perspective, last page (cursor)"]
    print(f"first_ms={ms:.1f} last_ms={last_ms:.1f} queries_per_page={max(n, last_n)}")


if __name__ == "__main__":
    main()
