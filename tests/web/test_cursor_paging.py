"""The VM and job tables page by cursor: Next/Previous/Last links, every row once."""

from __future__ import annotations

import re

from ovmweb.jobs.models import Job
from tests.factories import VirtualMachineFactory


def links(html: str) -> dict[str, str]:
    """rel/aria-label of each pager link -> its href."""
    pager = html[html.index('class="pager"') :]
    found = {}
    for href, rest in re.findall(r'<a class="btn btn-small" href="([^"]*)"([^>]*)>', pager):
        label = re.search(r'(?:rel|aria-label)="([^"]+)"', rest).group(1)
        found[label] = href.replace("&amp;", "&")
    return found


def test_vm_table_walks_by_cursor_and_jumps_to_the_last_page(admin_client):
    for i in range(60):
        VirtualMachineFactory(name=f"web-{i:03d}")
    html = admin_client.get("/vms/?per=25").content.decode()
    assert "1–25 of 60" in html and "Page 1 of 3" in html
    seen = re.findall(r"web-\d{3}", html)
    url = links(html)["next"]
    html = admin_client.get(f"/vms/{url}").content.decode()
    assert "60 in all" in html and set(links(html)) == {"First page", "prev", "next", "Last page"}
    seen += re.findall(r"web-\d{3}", html)
    last = admin_client.get(f"/vms/{links(html)['Last page']}").content.decode()
    # The last page is the last 25 rows (read backwards from the end), not offset 50's remainder.
    assert "36–60 of 60" in last and "Page 3 of 3" in last and "next" not in links(last)
    seen += re.findall(r"web-\d{3}", last)
    assert sorted(set(seen)) == [f"web-{i:03d}" for i in range(60)]
    back = admin_client.get(f"/vms/{links(last)['prev']}").content.decode()
    assert "web-010" in back and "web-034" in back and "web-035" not in back and "web-009" not in back


def test_vm_table_sorted_by_a_column_with_blanks_pages_by_cursor(admin_client):
    for i in range(30):
        VirtualMachineFactory(name=f"vm-{i:02d}")
    html = admin_client.get("/vms/?sort=-server&per=25").content.decode()
    second = admin_client.get(f"/vms/{links(html)['next']}").content.decode()
    names = set(re.findall(r"vm-\d\d", html)) | set(re.findall(r"vm-\d\d", second))
    assert len(names) == 30


def test_a_hand_made_cursor_gives_the_first_page(admin_client):
    VirtualMachineFactory(name="only-one")
    html = admin_client.get("/vms/?cursor=garbage").content.decode()
    assert "only-one" in html and "1–1 of 1" in html


def test_job_table_pages_by_cursor(admin_client, admin_user):
    for _ in range(55):
        Job.objects.create(operation="vm.start", user=admin_user)
    html = admin_client.get("/jobs/").content.decode()
    assert "1–50 of 55" in html
    rest = admin_client.get(f"/jobs/{links(html)['next']}").content.decode()
    assert "51–55 of 55" in rest and "next" not in links(rest)
    # offset links still answer
    assert admin_client.get("/jobs/?page=2").status_code == 200
