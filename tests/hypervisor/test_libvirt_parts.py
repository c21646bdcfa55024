"""The parts of the libvirt driver package: where libvirt may be imported, and the named steps
of the guest-message exchange, migration and pool definition, each on its own."""

import ast
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest

from ovmweb.errors import OperationFailed
from ovmweb.hypervisor.base import AgentTimeout, PoolSpec
from ovmweb.hypervisor.libvirt import LibvirtDriver, migration_xml
from ovmweb.hypervisor.libvirt.messages import _AGAIN, _Channel, _exchange
from ovmweb.hypervisor.libvirt.migration import migration_flags

OVMWEB = Path(__file__).resolve().parents[2] / "ovmweb"
PACKAGE = OVMWEB / "hypervisor" / "libvirt"


def _imports_libvirt(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "libvirt" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "libvirt":
            return True
    return False


def test_only_the_libvirt_package_imports_libvirt():
    importers = {p.relative_to(OVMWEB).parts[:2] for p in OVMWEB.rglob("*.py") if _imports_libvirt(p)}
    assert importers == {("hypervisor", "libvirt")}


def test_every_module_of_the_package_is_under_600_lines():
    sizes = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert {"domains.py", "storage.py", "migration.py", "events.py"} <= set(sizes)
    assert max(sizes.values()) < 600


# ---------------------------------------------------------------- guest messages


class FakeStream:
    """A non-blocking stream: each recv() hands out the next scripted chunk."""

    def __init__(self, chunks, answer_send_with=None):
        self.chunks = list(chunks)
        self.sent = []
        self.finished = False
        self.answer_send_with = answer_send_with or []

    def send(self, data):
        if self.answer_send_with:
            return self.answer_send_with.pop(0)
        self.sent.append(bytes(data))
        return len(data)

    def recv(self, _n):
        return self.chunks.pop(0) if self.chunks else _AGAIN

    def finish(self):
        self.finished = True


def test_channel_skips_stale_answers_and_waits_for_its_own():
    stream = FakeStream([_AGAIN, b"ACK old k ok\nACK r1 ", b"host ok\n"])
    assert _Channel(stream, timeout=2).request("SET r1 host aGk=", "r1") == ["ACK", "r1", "host", "ok"]
    assert stream.sent == [b"SET r1 host aGk=\n"]


def test_channel_retries_a_send_that_would_block():
    stream = FakeStream([b"ACK r1\n"], answer_send_with=[_AGAIN])
    _Channel(stream, timeout=2).request("PING r1", "r1")
    assert stream.sent == [b"PING r1\n"]


def test_channel_times_out_as_agent_timeout():
    with pytest.raises(AgentTimeout):
        _Channel(FakeStream([]), timeout=0.05).request("PING r1", "r1")


def test_channel_closed_by_the_guest_is_an_operation_failure():
    with pytest.raises(OperationFailed, match="closed"):
        _Channel(FakeStream([b""]), timeout=2).request("PING r1", "r1")


class Agent(FakeStream):
    """Answers each request line like the tiny guest's agent; refuses the key ``bad``."""

    def __init__(self):
        super().__init__([])

    def send(self, data):
        words = data.decode().split()
        if words[0] == "PING":
            self.chunks.append(f"ACK {words[1]}\n".encode())
        elif words[2] == "bad":
            self.chunks.append(f"ERR {words[1]} bad failed\n".encode())
        else:
            self.chunks.append(f"ACK {words[1]} {words[2]} ignored\n".encode())
        return len(data)


def test_exchange_pings_then_sets_each_key():
    assert _exchange(_Channel(Agent(), timeout=2), [("a", "1"), ("b", "2")]) == {"a": "ignored", "b": "ignored"}


def test_exchange_stops_at_a_refused_key():
    with pytest.raises(OperationFailed, match="refused bad: failed"):
        _exchange(_Channel(Agent(), timeout=2), [("bad", "x")])


# ---------------------------------------------------------------- migration


def test_migration_flags():
    base = libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    assert migration_flags(live=False, unsafe=False, copy_storage=False) == base
    everything = migration_flags(live=True, unsafe=True, copy_storage=True)
    assert everything == base | libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_UNSAFE | (
        libvirt.VIR_MIGRATE_NON_SHARED_DISK
    )


def test_migration_xml_sets_the_target_ports_and_disk_paths():
    document = (
        "<domain><devices>"
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/a/d.qcow2'/>"
        "<target dev='vda'/></disk>"
        "<serial type='tcp'><source mode='bind' service='7900'/></serial>"
        "<console type='tcp'><source mode='bind' service='7900'/></console>"
        "<graphics type='vnc' port='10000' autoport='yes'/>"
        "</devices></domain>"
    )
    root = ET.fromstring(migration_xml(document, 10007, 7907, {"/a/d.qcow2": "/b/d.qcow2"}))
    assert root.find("./devices/disk/source").get("file") == "/b/d.qcow2"
    assert root.find("./devices/disk/driver").get("type") == "qcow2"
    assert (root.find("./devices/graphics").get("port"), root.find("./devices/graphics").get("autoport")) == (
        "10007",
        "no",
    )
    assert {el.get("service") for el in root.iter("source") if el.get("mode")} == {"7907"}


def test_migration_to_a_non_libvirt_driver_is_refused():
    driver = LibvirtDriver("test:///default")
    try:
        with pytest.raises(OperationFailed, match="does not use libvirt"):
            driver.migrate(str(uuid.uuid4()), object())
    finally:
        driver.close()


# ---------------------------------------------------------------- pools (libvirt's in-memory test driver)


@pytest.fixture
def driver():
    d = LibvirtDriver("test:///default")
    yield d
    d.close()


def test_pool_define_is_idempotent_and_refuses_another_path(driver):
    spec = PoolSpec(name=f"p-{uuid.uuid4().hex[:8]}", path="/nowhere/repo")
    try:
        first = driver.pool_define(spec)
        assert (first.name, first.path) == (spec.name, "/nowhere/repo")
        assert driver.pool_define(spec).name == spec.name
        with pytest.raises(OperationFailed, match="already exists at /nowhere/repo"):
            driver.pool_define(PoolSpec(name=spec.name, path="/elsewhere"))
        assert driver.pool_refresh(spec.name).path == "/nowhere/repo"  # still there
    finally:
        driver.pool_undefine(spec.name)
    driver.pool_undefine(spec.name)  # idempotent
    with pytest.raises(OperationFailed):
        driver.pool_refresh(spec.name)


def test_pool_define_of_an_unknown_backend_defines_nothing(driver):
    name = f"p-{uuid.uuid4().hex[:8]}"
    with pytest.raises(OperationFailed, match="backend"):
        driver.pool_define(PoolSpec(name=name, path="/nowhere", backend="iscsi"))
    with pytest.raises(OperationFailed):
        driver.pool_refresh(name)
