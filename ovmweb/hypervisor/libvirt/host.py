"""What a server is: its facts from libvirt, and whether KVM really runs guests there."""

from __future__ import annotations

import threading
import time
import uuid as uuidlib
import xml.etree.ElementTree as ET

import libvirt

from ..base import HostFacts
from .connection import Connection, errors


def _version(number: int) -> str:
    major, rest = divmod(number, 1_000_000)
    minor, micro = divmod(rest, 1000)
    return f"{major}.{minor}.{micro}"


class HostMixin(Connection):
    def host_facts(self) -> HostFacts:
        with errors("reading host facts"):
            model, memory_mib, cpus, _mhz, _nodes, _sockets, _cores, _threads = self._conn.getInfo()
            caps = ET.fromstring(self._conn.getCapabilities())  # nosec B314  # a libvirt document, not user input; expat refuses entity bombs (tests/core/test_xml_safety.py)
            hostname = self._conn.getHostname()
            libvirt_version = _version(self._conn.getLibVersion())
            try:
                qemu_version = _version(self._conn.getVersion())
            except libvirt.libvirtError:
                qemu_version = ""
            free = self._conn.getFreeMemory() // (1024 * 1024)
        host_uuid = caps.findtext("./host/uuid") or ""
        vendor = caps.findtext("./host/cpu/vendor") or ""
        cpu_model = caps.findtext("./host/cpu/model") or model
        types = {d.get("type") for d in caps.findall("./guest/arch/domain")}
        # TCG is usable wherever QEMU is; KVM only once probe_kvm() proved it.
        domain_types = ["qemu"] if "qemu" in types else sorted(t for t in types if t)
        return HostFacts(
            hostname=hostname,
            host_uuid=host_uuid,
            cpu_vendor=vendor,
            cpu_family=None,
            cpu_model=None,
            cpu_model_name=cpu_model,
            cpu_cores=cpus,
            memory_mib=memory_mib,
            libvirt_version=libvirt_version,
            qemu_version=qemu_version,
            domain_types=domain_types,
            free_memory_mib=free,
        )

    def probe_kvm(self, timeout: float = 8.0) -> bool:
        """Run a transient KVM domain and require guest CPU progress within ``timeout``.

        ``/dev/kvm`` and libvirt's capabilities both claim KVM on machines whose
        CPU does not expose virtualisation; guests hang there. So KVM counts only
        if the probe's vCPU really executes (its CPU time advances while the
        firmware runs). The probe runs in its own thread because a hung KVM
        start can block the libvirt call itself.
        """
        caps = ET.fromstring(self._conn.getCapabilities())  # nosec B314  # a libvirt document, not user input; expat refuses entity bombs (tests/core/test_xml_safety.py)
        if "kvm" not in {d.get("type") for d in caps.findall("./guest/arch/domain")}:
            return False
        name = f"ovmweb-kvm-probe-{uuidlib.uuid4().hex[:8]}"
        probe_xml = (
            f"<domain type='kvm'><name>{name}</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>"
            "<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='network'/></os>"
            "<devices><graphics type='vnc' autoport='yes' listen='127.0.0.1'/></devices></domain>"
        )
        result: dict[str, bool] = {}

        def run() -> None:
            try:
                dom = self._conn.createXML(probe_xml, 0)
                first = dom.info()[4]
                deadline = time.monotonic() + max(timeout - 1, 1)
                while time.monotonic() < deadline:
                    time.sleep(0.3)
                    if dom.info()[4] > first + 50_000_000:  # 50 ms of guest CPU
                        result["ok"] = True
                        return
                result["ok"] = False
            except libvirt.libvirtError:
                result["ok"] = False

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        thread.join(timeout)
        try:
            self._conn.lookupByName(name).destroy()
        except libvirt.libvirtError:
            pass
        return bool(result.get("ok"))
