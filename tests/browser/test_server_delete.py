"""Delete on a server's page, in Chromium against the real stack: the confirm dialog, the
server.delete job in the jobs panel run by the embedded worker, the server gone from the
list, and another tab that showed the server sent to the list."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .conftest import shot
from .test_ui import SLOW, _login, _settle, _wait_job_success

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_delete_server_from_its_page(ovmweb_server, page):
    base = ovmweb_server["url"]
    dialogs: list[str] = []

    def accept(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    _login(page, base)
    page.goto(base + "/servers/discover/")
    page.locator("main").get_by_label("Host name or address").fill("localhost")
    page.locator("main").get_by_label("Display name").fill("doomed-hv")
    page.locator("main").get_by_label("Transport").select_option("local")
    page.get_by_role("button", name="Discover").click()
    expect(page).to_have_url(re.compile(r"/servers/$"))
    _wait_job_success(page, base, "doomed-hv|localhost")
    page.locator("#server-table").get_by_role("link", name="doomed-hv").click()
    expect(page).to_have_url(re.compile(r"/servers/\d+/$"))
    server_url = page.url

    # Another tab on the same server page: when the job has removed the server, it goes to the list.
    other = page.context.new_page()
    other.goto(server_url)
    _settle(other)

    _settle(page)
    page.locator("#server-page").get_by_role("button", name="Delete", exact=True).click()
    expect(page).to_have_url(re.compile(r"/servers/$"))
    assert dialogs and dialogs[0].startswith("Delete server doomed-hv?")
    expect(page.locator("#messages")).to_contain_text("Deletion of server doomed-hv queued as job #")
    _wait_job_success(page, base, "Delete server doomed-hv")
    expect(page.locator("#server-table")).not_to_contain_text("doomed-hv", timeout=SLOW)  # live, no reload
    expect(page.locator("#nav-tree")).not_to_contain_text("doomed-hv", timeout=SLOW)
    shot(page, "server-deleted")
    expect(other).to_have_url(re.compile(r"/servers/$"), timeout=SLOW)
    assert page.context.request.get(server_url).status == 404
    assert not [e for e in page.console_errors if "404" not in e], page.console_errors
