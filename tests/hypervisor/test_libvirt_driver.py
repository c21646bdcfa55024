"""The libvirt driver against libvirt's own in-process ``test:///default`` driver."""

import threading
import uuid
import xml.etree.ElementTree as ET

import pytest

from ovmweb.errors import DomainNotFound, DriverError, OperationFailed
from ovmweb.hypervisor.base import DomainSpec, NicSpec, PowerState
from ovmweb.hypervisor.libvirt import LibvirtDriver


@pytest.fixture
def driver():
    d = LibvirtDriver("test:///default")
    yield d
    d.close()


@pytest.fixture
def domain(driver):
    u = str(uuid.uuid4())
    spec = DomainSpec(
        name=f"t-{u[:8]}",
        uuid=u,
        domain_type="PVHVM",
        virt_type="qemu",
        vcpus=1,
        max_vcpus=4,
        memory_mib=128,
        max_memory_mib=512,
        nics=[NicSpec(mac="00:21:f6:00:10:01")],
        vnc_port=10100,
        serial_port=8000,
    )
    driver.define(spec)
    yield spec
    driver.undefine(u)


def test_define_start_shutdown(driver, domain):
    assert driver.domain_info(domain.uuid).state == PowerState.SHUTOFF
    driver.start(domain.uuid)
    info = driver.domain_info(domain.uuid)
    assert info.state == PowerState.RUNNING and info.name == domain.name and info.memory_mib == 128
    driver.shutdown(domain.uuid)
    assert driver.domain_info(domain.uuid).state == PowerState.SHUTOFF


def test_destroy_is_idempotent(driver, domain):
    driver.start(domain.uuid)
    driver.destroy(domain.uuid)
    driver.destroy(domain.uuid)
    driver.destroy(str(uuid.uuid4()))  # absent: nothing to do
    assert driver.domain_info(domain.uuid).state == PowerState.SHUTOFF


def test_suspend_resume(driver, domain):
    driver.start(domain.uuid)
    driver.suspend(domain.uuid)
    assert driver.domain_info(domain.uuid).state == PowerState.PAUSED
    driver.resume(domain.uuid)
    assert driver.domain_info(domain.uuid).state == PowerState.RUNNING
    driver.destroy(domain.uuid)


def test_set_vcpus_and_memory_live_and_persistent(driver, domain):
    driver.start(domain.uuid)
    driver.set_vcpus(domain.uuid, 3)
    driver.set_memory(domain.uuid, 256)
    info = driver.domain_info(domain.uuid)
    assert (info.vcpus, info.memory_mib) == (3, 256)
    driver.destroy(domain.uuid)
    root = ET.fromstring(driver.domain_xml(domain.uuid))
    assert root.find("vcpu").get("current") == "3"
    assert root.findtext("currentMemory") == str(256 * 1024)


def test_vcpus_above_max_fail_as_driver_error(driver, domain):
    with pytest.raises(OperationFailed):
        driver.set_vcpus(domain.uuid, 9)


def test_defined_xml_round_trips_consoles(driver, domain):
    root = ET.fromstring(driver.domain_xml(domain.uuid))
    assert root.find("./devices/graphics").get("port") == "10100"
    assert root.find("./devices/serial/source").get("service") == "8000"
    assert root.find("./devices/interface/mac").get("address") == "00:21:f6:00:10:01"


def test_unknown_domain_raises_domain_not_found(driver):
    with pytest.raises(DomainNotFound):
        driver.start(str(uuid.uuid4()))


def test_undefine_removes_and_is_idempotent(driver, domain):
    driver.start(domain.uuid)
    driver.undefine(domain.uuid)
    assert domain.uuid not in {d.uuid for d in driver.list_domains()}
    driver.undefine(domain.uuid)


def test_pvm_without_kernel_is_a_driver_error(driver):
    spec = DomainSpec(
        name="pvm-bad",
        uuid=str(uuid.uuid4()),
        domain_type="PVM",
        virt_type="qemu",
        vcpus=1,
        max_vcpus=1,
        memory_mib=64,
        max_memory_mib=64,
    )
    with pytest.raises(OperationFailed, match="kernel"):
        driver.define(spec)


def test_lifecycle_events_reach_the_callback(driver, domain):
    seen = []
    got = threading.Event()

    def callback(event):
        if event.uuid == domain.uuid:
            seen.append(event.state)
            if event.state == PowerState.SHUTOFF:
                got.set()

    handle = driver.subscribe_events(callback)
    try:
        driver.start(domain.uuid)
        driver.suspend(domain.uuid)
        driver.resume(domain.uuid)
        driver.destroy(domain.uuid)
        assert got.wait(5)
    finally:
        driver.unsubscribe_events(handle)
    assert seen == [PowerState.RUNNING, PowerState.PAUSED, PowerState.RUNNING, PowerState.SHUTOFF]


def test_host_facts(driver):
    facts = driver.host_facts()
    assert facts.libvirt_version.count(".") == 2
    assert facts.cpu_cores > 0 and facts.memory_mib > 0


def test_bad_uri_is_a_connection_error():
    with pytest.raises(DriverError):
        LibvirtDriver("qemu+tcp://127.0.0.1:1/system")
