"""driver_for(): one cached connection per server, the URI per transport."""
from urllib.parse import parse_qs, urlsplit

import pytest

from ovmweb.hypervisor import connections
from ovmweb.hypervisor.base import ConnectionFailed
from ovmweb.inventory.models import Server
from ovmweb.tunnels.credentials import encrypt_credentials


@pytest.fixture(autouse=True)
def _close():
    yield
    connections.close_all()


def test_override_uri_is_used_and_cached(settings, db):
    settings.OVMWEB_HYPERVISOR_URI = "test:///default"
    server = Server.objects.create(name="s1", hostname="h1", transport="ssh")
    driver = connections.driver_for(server)
    assert driver.uri == "test:///default"
    assert connections.driver_for(server) is driver
    connections.close_all()
    assert not driver.is_alive()
    assert connections.driver_for(server) is not driver


def test_local_transport_uses_qemu_system(settings, db):
    settings.OVMWEB_HYPERVISOR_URI = ""
    server = Server(pk=1, name="l", hostname="localhost", transport="local")
    assert connections.server_uri(server) == "qemu:///system"


def test_ssh_uri_pins_the_host_key(settings, db, tmp_path):
    settings.OVMWEB_HYPERVISOR_URI = ""
    settings.VAR_DIR = tmp_path
    server = Server(
        pk=7, name="r", hostname="10.0.0.5", transport="ssh", ssh_port=2222, ssh_user="root",
        host_key="ssh-ed25519 AAAAkey", credentials_encrypted=encrypt_credentials({"private_key": "PRIVATE"}),
    )
    uri = connections.server_uri(server)
    parts = urlsplit(uri)
    assert parts.scheme == "qemu+libssh" and parts.netloc == "root@10.0.0.5:2222"
    query = parse_qs(parts.query)
    assert query["known_hosts_verify"] == ["normal"]
    known = open(query["known_hosts"][0]).read()
    assert known.strip() == "[10.0.0.5]:2222 ssh-ed25519 AAAAkey"
    keyfile = query["keyfile"][0]
    assert open(keyfile).read().strip() == "PRIVATE"
    assert oct(__import__("os").stat(keyfile).st_mode & 0o777) == "0o600"


def test_ssh_without_pinned_key_is_refused(settings, db):
    settings.OVMWEB_HYPERVISOR_URI = ""
    server = Server(pk=8, name="r2", hostname="h", transport="ssh")
    with pytest.raises(ConnectionFailed, match="pinned"):
        connections.server_uri(server)
