"""driver_for(): one cached connection per server, the URI per transport."""
import os
import shlex
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


def test_ssh_uri_uses_openssh_with_only_the_pinned_host_key(settings, db, tmp_path):
    settings.OVMWEB_HYPERVISOR_URI = ""
    settings.VAR_DIR = tmp_path
    server = Server(
        pk=7, name="r", hostname="10.0.0.5", transport="ssh", ssh_port=2222, ssh_user="root",
        host_key="ssh-ed25519 AAAAkey", credentials_encrypted=encrypt_credentials({"private_key": "PRIVATE"}),
    )
    uri = connections.server_uri(server)
    parts = urlsplit(uri)
    assert parts.scheme == "qemu+ssh" and parts.netloc == "root@10.0.0.5:2222" and parts.path == "/system"
    query = parse_qs(parts.query)
    assert query["no_verify"] == ["0"] and query["no_tty"] == ["1"]
    keyfile = query["keyfile"][0]
    assert open(keyfile).read().strip() == "PRIVATE"
    assert oct(os.stat(keyfile).st_mode & 0o777) == "0o600"
    wrapper = query["command"][0]
    assert wrapper == str(tmp_path / "ssh-wrappers" / "server-7.sh")
    assert oct(os.stat(wrapper).st_mode & 0o777) == "0o700"
    argv = shlex.split(open(wrapper).read().splitlines()[-1])
    assert argv[0] == "exec" and argv[-1] == "$@"
    options = dict(argv[i + 1].split("=", 1) for i, arg in enumerate(argv) if arg == "-o")
    known_hosts = options["UserKnownHostsFile"]
    assert open(known_hosts).read().strip() == "[10.0.0.5]:2222 ssh-ed25519 AAAAkey"
    assert options["GlobalKnownHostsFile"] == "/dev/null"
    assert options["StrictHostKeyChecking"] == "yes" and options["UpdateHostKeys"] == "no"
    assert options["BatchMode"] == "yes"
    assert argv[argv.index("-i") + 1] == keyfile and argv[argv.index("-F") + 1] == "none"
    # Nothing secret in the URI itself (it can reach logs and error messages).
    assert "PRIVATE" not in uri


def test_password_only_server_keeps_libssh(settings, db, tmp_path):
    settings.OVMWEB_HYPERVISOR_URI = ""
    settings.VAR_DIR = tmp_path
    server = Server(
        pk=9, name="p", hostname="h", transport="ssh", ssh_port=22, ssh_user="root",
        host_key="ssh-ed25519 AAAAkey", credentials_encrypted=encrypt_credentials({"password": "secret"}),
    )
    uri = connections.server_uri(server)
    parts = urlsplit(uri)
    assert parts.scheme == "qemu+libssh" and "secret" not in uri
    query = parse_qs(parts.query)
    assert query["known_hosts_verify"] == ["normal"] and query["sshauth"] == ["password"]
    assert open(query["known_hosts"][0]).read().strip() == "h ssh-ed25519 AAAAkey"
    assert connections._password(server) == "secret"


def test_ssh_without_pinned_key_is_refused(settings, db):
    settings.OVMWEB_HYPERVISOR_URI = ""
    server = Server(pk=8, name="r2", hostname="h", transport="ssh")
    with pytest.raises(ConnectionFailed, match="pinned"):
        connections.server_uri(server)
