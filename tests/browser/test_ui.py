"""The management UI in Debian's Chromium against the real stack: daphne with
the embedded job worker and monitor, real libvirtd + QEMU (TCG), the tiny guest
ISO. One flow, in the order an administrator would go."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from .conftest import ADMIN_PASSWORD, ROOT, shot

pytestmark = [pytest.mark.browser, pytest.mark.integration]

TINY_ISO = ROOT / "var" / "guest" / "tiny.iso"
SLOW = 120_000  # ms: TCG boots, libvirt's first QEMU probe
BOOT_TIMEOUT = 240  # s: the tiny guest under TCG on 2 shared cores
TERMINAL_LINES = """() => {
  const b = window.ovmTerm.buffer.active, out = [];
  for (let i = 0; i < b.length; i++) out.push(b.getLine(i).translateToString(true));
  return out;
}"""


def _login(page, base):
    page.goto(base + "/vms/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/vms/"))
    shot(page, "01-login")
    page.locator("main").get_by_label("User name").fill("admin")
    page.locator("main").get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/vms/$"))
    expect(page.locator("#live-status")).to_have_attribute("data-state", "open")


def _settle(page):
    """Let the live socket open and its catch-up refresh land before clicking what it re-renders."""
    expect(page.locator("#live-status")).to_have_attribute("data-state", "open")
    page.wait_for_load_state("networkidle")


def _wait_job_success(page, base, summary_re: str):
    """Follow the live jobs panel until the newest job matching ``summary_re`` ends."""
    row = page.locator("#jobs-panel tr", has_text=re.compile(summary_re)).first
    expect(row).to_be_visible(timeout=SLOW)
    expect(row.locator(".badge")).to_have_text(re.compile("Success|Failure|Aborted"), timeout=SLOW)
    status = row.locator(".badge").inner_text()
    assert status == "Success", f"job {summary_re!r} ended {status}: {row.inner_text()}"


def test_administrator_flow(ovmweb_server, page):
    base = ovmweb_server["url"]
    assert TINY_ISO.exists(), "the tiny guest ISO (scripts/build-tiny-guest.sh) is missing"
    page.on("dialog", lambda d: d.accept())
    page.on("response", lambda r: page.console_errors.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
    _login(page, base)

    # A server pool, then discover this machine into it.
    page.get_by_role("link", name="Create pool…").click()
    page.locator("main").get_by_label("Name").fill("browser-pool")
    page.locator("main").get_by_role("button", name="Create", exact=True).click()
    expect(page.locator("#messages")).to_contain_text("Server pool browser-pool created")
    page.goto(base + "/servers/discover/")
    # Fetch host key: the real sshd's fingerprint is shown to compare, never pre-confirmed.
    page.locator("main").get_by_label("Host name or address").fill("127.0.0.1")
    page.locator("main").get_by_label("SSH port").fill((ROOT / "var" / "ssh" / "port").read_text().strip())
    page.get_by_role("button", name="Fetch host key").click()
    expect(page.locator("#host-key-result code.fingerprint")).to_have_text(
        (ROOT / "var" / "ssh" / "host_fingerprint").read_text().strip()
    )
    expect(page.locator("#id_confirm_scanned")).not_to_be_checked()
    shot(page, "02a-discover-host-key")
    page.locator("main").get_by_label("Host name or address").fill("localhost")
    page.locator("main").get_by_label("Display name").fill("local-hv")
    page.locator("main").get_by_label("Transport").select_option("local")
    page.locator("main").get_by_label("Server pool").select_option(label="browser-pool")
    shot(page, "02-discover")
    page.get_by_role("button", name="Discover").click()
    expect(page).to_have_url(re.compile(r"/servers/$"))
    # The status turns Running live (no reload): discovery runs in the embedded worker.
    expect(page.locator("#server-table tr", has_text="local-hv").locator(".badge")).to_have_text(
        "Running", timeout=SLOW
    )
    expect(page.locator("#nav-tree")).to_contain_text("local-hv")
    _wait_job_success(page, base, "local-hv|localhost")
    shot(page, "03-servers")
    page.locator("#server-table").get_by_role("link", name="local-hv").click()
    expect(page.locator("dl.facts")).to_contain_text("QEMU")
    shot(page, "04-server-facts")

    # A local repository on it (the directory is the server's storage, prepared by
    # its administrator), and the tiny guest ISO uploaded with a progress bar.
    (ovmweb_server["tmp"] / "repo").mkdir()
    page.goto(base + "/repositories/")
    page.locator("details.panel summary").click()
    page.locator("main").get_by_label("Name", exact=True).fill("local-repo")
    page.locator("main").get_by_label("Kind").select_option("LOCAL")
    page.locator("main").get_by_label("Path on the servers").fill(str(ovmweb_server["tmp"] / "repo"))
    page.locator("main").get_by_label("Server (local repositories)").select_option(label="local-hv")
    page.locator("main").get_by_role("button", name="Create", exact=True).click()
    _wait_job_success(page, base, "local-repo")
    page.locator("#repo-table").get_by_role("link", name="local-repo").click()
    page.locator("main").get_by_label("ISO file").set_input_files(str(TINY_ISO))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator(".upload-result")).to_contain_text("job #", timeout=SLOW)
    expect(page.locator(".upload-progress progress")).to_have_attribute("value", "100")
    shot(page, "05-repository-upload")
    _wait_job_success(page, base, "tiny.iso")
    expect(page.locator("#iso-table")).to_contain_text("tiny.iso")  # live, no reload
    shot(page, "05b-repository-contents")

    # Create a VM from the ISO through the wizard.
    page.goto(base + "/vms/new/")
    shot(page, "06-create-source")
    page.get_by_role("link", name=re.compile("ISO in a repository")).click()
    page.locator("main").get_by_label("ISO file").select_option(label="tiny.iso")
    page.locator("main").get_by_label("Domain type").select_option("HVM")
    page.locator("main").get_by_label("Name", exact=True).fill("tiny-1")
    page.locator("main").get_by_label("Server pool").select_option(label="browser-pool")
    page.locator("main").get_by_label("Repository").select_option(label="local-repo")
    page.locator("main").get_by_label("Memory (MiB)", exact=True).fill("128")
    page.locator("main").get_by_label("Max. memory (MiB)").fill("256")
    # First an error the service reports next to its field.
    page.locator("main").get_by_label("vCPUs", exact=True).fill("3")
    page.locator("main").get_by_label("Max. vCPUs").fill("2")
    page.locator("main").get_by_role("button", name="Create", exact=True).click()
    expect(page.locator("#id_vcpus_error")).to_contain_text("exceed")
    shot(page, "07-create-field-error")
    page.locator("main").get_by_label("vCPUs", exact=True).fill("1")
    page.locator("main").get_by_role("button", name="Create", exact=True).click()
    expect(page.locator("#messages")).to_contain_text("tiny-1 created")
    row = page.locator("tr.vm-row", has_text="tiny-1")
    expect(row.locator(".badge")).to_have_text("Stopped")
    vm_id = row.get_attribute("data-vm")

    # Start it; RUNNING arrives over the live socket, without a reload.
    toolbar = page.locator("#vm-toolbar")
    _settle(page)
    expect(toolbar.get_by_role("button", name="Start", exact=True)).to_be_enabled()
    expect(toolbar.get_by_role("button", name="Stop", exact=True)).to_be_disabled()
    toolbar.get_by_role("button", name="Start", exact=True).click()
    expect(page.locator("#messages")).to_contain_text("queued as job")
    page.evaluate("window.__noReload = true")
    expect(page.locator(f"#vm-row-{vm_id} .badge")).to_have_text("Running", timeout=SLOW)
    assert page.evaluate("window.__noReload") is True, "the page reloaded instead of updating live"
    assert page.evaluate("window.ovmwebLive.received.some(m => m.topic === 'vm' && m.payload.status === 'RUNNING')")
    expect(toolbar.get_by_role("button", name="Stop", exact=True)).to_be_enabled(timeout=10_000)
    expect(toolbar.get_by_role("button", name="Start", exact=True)).to_be_disabled()
    page.locator(f"#vm-row-{vm_id} button.expander").click()
    expect(page.locator(f"#vm-detail-{vm_id}")).to_contain_text("VNC", timeout=10_000)
    shot(page, "08-vms-running-expanded")

    # Its console opens in a new tab (the consoles helper's page).
    with page.context.expect_page() as popup_info:
        toolbar.get_by_role("link", name="Launch Console").click()
    console = popup_info.value
    console.wait_for_load_state()
    assert f"/vms/{vm_id}/console/" in console.url
    expect(console.locator("#conn-status")).to_have_attribute("data-state", "connected", timeout=30_000)
    console.wait_for_timeout(2000)
    shot(console, "09-console")
    console.close()

    # And the serial console: wait for the guest's shell (it also tells us the guest
    # has booted far enough to honour the ACPI power button at Stop).
    with page.context.expect_page() as popup_info:
        toolbar.get_by_role("link", name="Launch Serial Console").click()
    serial = popup_info.value
    expect(serial.locator("#conn-status")).to_have_attribute("data-state", "connected", timeout=30_000)
    serial.locator("#screen .xterm").click()
    deadline = time.monotonic() + BOOT_TIMEOUT
    while not any(line.strip() == "tinyguest" for line in serial.evaluate(TERMINAL_LINES)):
        assert time.monotonic() < deadline, "the guest's serial shell never answered"
        serial.keyboard.type("uname -n")
        serial.keyboard.press("Enter")
        serial.wait_for_timeout(2000)
    shot(serial, "10-serial-console")
    serial.close()

    # Edit: a runtime change to a running VM is pending until stop + start.
    _settle(page)
    toolbar.get_by_role("link", name="Edit…").click()
    page.locator("main").get_by_label("Keymap").select_option("de")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#pending-changes")).to_contain_text("At next start")
    expect(page.locator("#pending-changes")).to_contain_text("de")
    shot(page, "11-edit-pending")

    # Stop it (confirmed), STOPPED arrives live.
    page.goto(f"{base}/vms/?selected={vm_id}&q=tiny-1")
    _settle(page)
    page.evaluate("window.__noReload = true")
    page.locator("#vm-toolbar").get_by_role("button", name="Stop", exact=True).click()
    expect(page.locator(f"#vm-row-{vm_id} .badge")).to_have_text("Stopped", timeout=SLOW)
    _wait_job_success(page, base, "tiny-1")

    # Back it up (stopped: a cold clone) through the toolbar's form.
    _settle(page)
    page.locator("#vm-toolbar").get_by_role("link", name="Back Up…").click()
    page.locator("main").get_by_label("Repository for the backup").select_option(label="local-repo")
    shot(page, "11b-backup")
    page.locator("main").get_by_role("button", name="Back Up").click()
    expect(page.locator("#messages")).to_contain_text("Backup of tiny-1 queued")
    _wait_job_success(page, base, "tiny-1-backup-")

    # A clone customizer from the toolbar: created, listed, deleted (confirmed).
    page.goto(f"{base}/vms/?selected={vm_id}&q=tiny-1")
    _settle(page)
    page.locator("#vm-toolbar").get_by_role("link", name="Clone Customizers…").click()
    page.get_by_role("link", name="Create Clone Customizer…").click()
    page.locator("#customizer-form").get_by_label("Name", exact=True).fill("to-local")
    for select in page.locator("#customizer-disks select[name$='_repository']").all():
        select.select_option(label="local-repo")
    page.locator("#customizer-form").get_by_role("button", name="Create", exact=True).click()
    expect(page.locator("#messages")).to_contain_text("Clone customizer to-local of tiny-1 created")
    expect(page.locator("#customizer-table")).to_contain_text("to-local")
    shot(page, "11c-clone-customizers")
    page.locator("#customizer-table tr", has_text="to-local").get_by_role("button", name="Delete").click()
    expect(page.locator("#messages")).to_contain_text("Clone customizer to-local deleted")
    expect(page.locator("#customizer-table")).to_contain_text("No clone customizers.")

    # The job and the VM's events.
    page.goto(base + "/jobs/")
    expect(page.locator("#job-table")).to_contain_text("tiny-1")
    shot(page, "12-jobs")
    page.locator("#job-table a", has_text=re.compile("tiny-1")).first.click()
    expect(page.locator(".joblog")).to_be_visible()
    shot(page, "13-job-detail")
    page.goto(f"{base}/events/?type=virtualmachine&id={vm_id}")
    expect(page.locator("#event-table")).to_contain_text("tiny-1")
    shot(page, "14-events")
    page.locator("#event-table").get_by_role("button", name="Acknowledge").first.click()
    expect(page.locator("#event-table")).to_contain_text("yes (admin)")
    page.goto(base + "/networks/")
    main = page.locator("main")
    main.get_by_label("Name", exact=True).fill("vm-net")
    main.get_by_label("libvirt network").fill("default")
    main.get_by_label("Virtual machine").check()
    main.get_by_role("button", name="Create", exact=True).click()
    expect(page.locator("#network-table")).to_contain_text("vm-net")
    shot(page, "15-networking")

    # A change made in another browser window appears here live.
    page.goto(f"{base}/vms/?selected={vm_id}")
    _settle(page)
    page.evaluate("window.__noReload = true")
    other = page.context.new_page()
    other.goto(f"{base}/vms/{vm_id}/edit/")
    other.locator("main").get_by_label("Name", exact=True).fill("tiny-renamed")
    other.locator("main").get_by_role("button", name="Save").click()
    expect(other.locator("#messages")).to_contain_text("updated")
    other.close()
    expect(page.locator(f"#vm-row-{vm_id} td.name")).to_contain_text("tiny-renamed", timeout=15_000)
    assert page.evaluate("window.__noReload") is True

    # Clean up the domain through the UI.
    _settle(page)
    page.locator("#vm-toolbar").get_by_role("button", name="Delete").click()
    expect(page.locator("#messages")).to_contain_text("Deletion of tiny-renamed queued")
    _wait_job_success(page, base, "tiny-renamed")

    assert page.console_errors == [], page.console_errors
