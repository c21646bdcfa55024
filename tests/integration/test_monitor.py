"""The monitor on real servers: a server cut off becomes UNREACHABLE and its VMs
STOPPED (OFFLINE); back again, the states are re-read; a guest that powers itself
off is STOPPED through libvirt's events, not a periodic reconcile."""

import selectors
import socket
import threading
import uuid

import pytest

from ovmweb.hypervisor.libvirt import LibvirtDriver
from ovmweb.inventory.models import Server, VirtualMachine
from ovmweb.inventory.services import pools, servers, vms
from ovmweb.jobs.models import Event
from ovmweb.jobs.testing import run_pending_jobs
from ovmweb.monitor.service import Monitor

from .conftest import make_repository, upload_guest_iso, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


class Link:
    """A TCP forwarder standing for the network between manager and server: ``cut()``
    closes every connection and stops listening, ``restore()`` listens again on the same port."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = 0
        self._listener = None
        self._stop = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._thread = None

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ)
        peers: dict[socket.socket, socket.socket] = {}
        while not self._stop.is_set():
            for key, _mask in sel.select(0.1):
                sock = key.fileobj
                if sock is self._listener:
                    client, _addr = sock.accept()
                    upstream = socket.create_connection(("127.0.0.1", self.target_port))
                    peers[client], peers[upstream] = upstream, client
                    self._sockets |= {client, upstream}
                    sel.register(client, selectors.EVENT_READ)
                    sel.register(upstream, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                other = peers.get(sock)
                if not data or other is None:
                    for s in (sock, other):
                        if s is not None and s in peers:
                            sel.unregister(s)
                            peers.pop(s, None)
                            s.close()
                    continue
                try:
                    other.sendall(data)
                except OSError:
                    pass
        for s in list(peers):
            sel.unregister(s)
            s.close()
        sel.unregister(self._listener)
        self._listener.close()

    def cut(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def ssh_estate(admin_user, ssh_access, real_hypervisor, tmp_path, cleanup_all, settings):
    """An SSH server reached through a ``Link``, a repository on it, the tiny guest's ISO, one VM."""
    link = Link(ssh_access["port"])
    link.restore()
    pool = pools.server_pool_create(user=admin_user, name=f"mon-{uuid.uuid4().hex[:6]}")
    job = servers.server_discover(
        user=admin_user,
        hostname="127.0.0.1",
        transport="ssh",
        ssh_port=link.port,
        private_key=ssh_access["private_key"],
        host_key_fingerprint=ssh_access["fingerprint"],
        name="linked",
        server_pool=pool,
    )
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == "SUCCESS", job.error
    server = Server.objects.get(name="linked")
    repo = make_repository(user=admin_user, server=server, pool=pool, path=tmp_path / "repo")
    iso = upload_guest_iso(user=admin_user, repo=repo)
    vm = vms.vm_create(
        user=admin_user,
        name=f"mon-{uuid.uuid4().hex[:6]}",
        server_pool=pool,
        repository=repo,
        domain_type="HVM",
        os_type="OTHER_LINUX",
        memory_mib=128,
        max_memory_mib=128,
        source={"kind": "iso", "iso": iso},
        boot_order=["cdrom"],
    )
    yield {"link": link, "server": server, "vm": vm, "user": admin_user, "pool": pool}
    if not link._stop.is_set():
        link.cut()


def _status(model, pk):
    return model.objects.values_list("status", flat=True).get(pk=pk)


def test_cut_off_server_goes_unreachable_and_comes_back(ssh_estate):
    link, server, vm, user = ssh_estate["link"], ssh_estate["server"], ssh_estate["vm"], ssh_estate["user"]
    vms.vm_action(vm=vm, action="start", user=user)
    run_pending_jobs()
    vm.refresh_from_db()
    assert vm.status == "RUNNING"
    ports = (vm.vnc_port, vm.serial_port)

    monitor = Monitor(interval=1, offline_after=3)
    monitor.start()
    try:
        assert wait_for(lambda: Server.objects.get(pk=server.pk).last_seen_at is not None, 10)
        link.cut()
        assert wait_for(lambda: _status(Server, server.pk) == "UNREACHABLE", 30), "server not marked UNREACHABLE"
        assert wait_for(lambda: _status(VirtualMachine, vm.pk) == "STOPPED", 10)
        offline = Event.objects.filter(type="vm.offline").first()
        assert offline is not None and "OFFLINE" in offline.text and offline.severity == "WARNING"
        assert Event.objects.filter(type="server.unreachable", severity="CRITICAL").exists()

        # Actions on its VMs fail clearly while it is away.
        job = vms.vm_action(vm=VirtualMachine.objects.get(pk=vm.pk), action="start", user=user)
        run_pending_jobs()
        job.refresh_from_db()
        assert job.status == "FAILURE" and "UNREACHABLE" in job.error, job.error
        assert _status(VirtualMachine, vm.pk) == "STOPPED"

        # The guest kept running on the server all along; once the link is back the state is re-read.
        link.restore()
        assert wait_for(lambda: _status(Server, server.pk) == "RUNNING", 30), "server not back to RUNNING"
        assert wait_for(lambda: _status(VirtualMachine, vm.pk) == "RUNNING", 15), "VM state not re-read"
        vm.refresh_from_db()
        assert (vm.vnc_port, vm.serial_port) == ports  # its console ports were never given away
        assert Event.objects.filter(type="server.reachable").exists()

        # Cut again, and the guest dies while the server is away: back, the VM stays
        # STOPPED and the ports it kept are free again.
        link.cut()
        assert wait_for(lambda: _status(VirtualMachine, vm.pk) == "STOPPED", 30)
        local = LibvirtDriver("qemu:///system")
        try:
            local.destroy(str(vm.uuid))
        finally:
            local.close()
        link.restore()
        assert wait_for(lambda: _status(Server, server.pk) == "RUNNING", 30)
        assert wait_for(lambda: VirtualMachine.objects.get(pk=vm.pk).vnc_port is None, 15), "ports not released"
        assert _status(VirtualMachine, vm.pk) == "STOPPED"
    finally:
        monitor.stop()


def test_guest_poweroff_is_seen_through_events(ssh_estate):
    vm, user = ssh_estate["vm"], ssh_estate["user"]
    vms.vm_action(vm=vm, action="start", user=user)
    run_pending_jobs()
    vm.refresh_from_db()
    assert vm.status == "RUNNING"
    # A reconcile only at start (to subscribe), then never again within this test:
    # whatever notices the power-off is the event path.
    monitor = Monitor(interval=3600, offline_after=3600)
    monitor.start()
    local = LibvirtDriver("qemu:///system")
    try:
        assert wait_for(lambda: monitor._subscriptions.get(vm.server_id), 15)
        sock = socket.create_connection(("127.0.0.1", vm.serial_port), timeout=120)
        buffer = b""
        while b"ovmweb tiny guest" not in buffer:
            chunk = sock.recv(4096)
            assert chunk, buffer[-500:]
            buffer += chunk
        sock.sendall(b"\n")
        wait_for(lambda: False, 1.5)
        sock.sendall(b"poweroff\n")
        assert wait_for(lambda: local.domain_info(str(vm.uuid)).state.value == "shutoff", 60), "guest did not power off"
        assert wait_for(lambda: _status(VirtualMachine, vm.pk) == "STOPPED", 10), "power-off not seen"
        event = Event.objects.filter(type="vm.state", text__contains="powered off").order_by("-pk").first()
        assert event is not None
        vm.refresh_from_db()
        assert vm.vnc_port is None and vm.serial_port is None
        sock.close()
    finally:
        local.close()
        monitor.stop()
