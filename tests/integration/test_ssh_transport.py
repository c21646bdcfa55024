"""libvirt over OpenSSH (the ``ssh`` transport through ovmweb's wrapper script) against the
real loopback sshd: an idle connection and concurrent callers do not take the process
down (libvirt 9.0's libssh transport segfaulted on both), and a host key other than the
pinned one is refused without anything being learned."""

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ovmweb.errors import HostKeyMismatch
from ovmweb.hypervisor import connections
from ovmweb.inventory.models import Server
from ovmweb.inventory.services import servers
from ovmweb.jobs.testing import run_pending_jobs

from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

IDLE_SECONDS = 40  # libssh crashed after ~30 s idle; keepalive probes run every 5 s meanwhile
IDLE_AFTER_SHARING = 12  # keepalive probes again, now after concurrent use


def _discovered(user, access) -> Server:
    job = servers.server_discover(
        user=user,
        hostname="127.0.0.1",
        transport="ssh",
        ssh_port=access["port"],
        ssh_user="root",
        private_key=access["private_key"],
        host_key_fingerprint=access["fingerprint"],
        name="over-openssh",
    )
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == "SUCCESS", job.error
    return Server.objects.get(name="over-openssh")


def test_idle_and_shared_ssh_connection_keeps_working(admin_user, ssh_access, real_hypervisor):
    server = _discovered(admin_user, ssh_access)
    driver = connections.driver_for(server)
    assert driver.uri.startswith("qemu+ssh://root@127.0.0.1:")
    assert isinstance(driver.list_domains(), list)

    time.sleep(IDLE_SECONDS)
    assert driver.is_alive()
    assert connections.driver_for(server) is driver  # the same connection, not a reopened one
    assert isinstance(driver.list_domains(), list)  # other tests' domains come and go: no count
    assert driver.host_facts().libvirt_version

    # Several threads on the one cached connection at once (the monitor, jobs, a migration's
    # progress reads do this), then idle again.
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            for _ in range(15):
                driver.list_domains()
                driver.host_facts()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors and not any(t.is_alive() for t in threads)
    time.sleep(IDLE_AFTER_SHARING)
    assert isinstance(driver.list_domains(), list) and driver.is_alive()

    # The link dies (its ssh process is killed): the connection is noticed dead, not hung
    # on and not crashing, and driver_for() opens a new one, as the monitor relies on.
    wrapper = f"ssh-wrappers/server-{server.pk}.sh"
    assert wrapper in driver.uri
    children = _ssh_children(f"server-{server.pk}.known_hosts")
    assert len(children) == 1, children
    os.kill(children[0], signal.SIGKILL)
    assert wait_for(lambda: not driver.is_alive(), 30)
    fresh = connections.driver_for(server)
    assert fresh is not driver and isinstance(fresh.list_domains(), list)


def _ssh_children(marker: str) -> list[int]:
    """Pids of this process's ssh children whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and argv and argv[0].endswith(b"ssh") and any(marker.encode() in a for a in argv):
            found.append(int(entry.name))
    return found


def test_libvirt_over_ssh_refuses_another_host_key(admin_user, ssh_access, real_hypervisor, tmp_path, settings):
    server = _discovered(admin_user, ssh_access)
    connections.forget(server)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    server.host_key = other  # pinned: a key the server does not have
    home_known = Path.home() / ".ssh" / "known_hosts"
    home_before = home_known.read_bytes() if home_known.exists() else None

    with pytest.raises(HostKeyMismatch, match="(?i)host key verification failed"):
        connections.driver_for(server)

    # Nothing learned: the pinned file still holds only the pinned key, no other known_hosts touched.
    pinned = Path(settings.VAR_DIR) / "hypervisor" / f"server-{server.pk}.known_hosts"
    assert pinned.read_text().split() == [f"[127.0.0.1]:{ssh_access['port']}", *other.split()]
    assert (home_known.read_bytes() if home_known.exists() else None) == home_before
