"""driver_for(): one cached connection per server, the URI per transport."""

import os
import shlex
from urllib.parse import parse_qs, urlsplit

import pytest

from ovmweb.errors import ConnectionFailed
from ovmweb.hypervisor import connections
from ovmweb.inventory.models import Server
from ovmweb.tunnels.credentials import encrypt_credentials


def _ssh_server(*, pk: int, hostname: str = "h", ssh_port: int = 22, **credentials) -> Server:
    return Server(
        pk=pk,
        name=f"s{pk}",
        hostname=hostname,
        transport="ssh",
        ssh_port=ssh_port,
        ssh_user="root",
        host_key="ssh-ed25519 AAAAkey",
        credentials_encrypted=encrypt_credentials(credentials),
    )


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
    server = _ssh_server(pk=7, hostname="10.0.0.5", ssh_port=2222, private_key="PRIVATE")
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
    assert options["IdentityFile"] == keyfile and argv[argv.index("-F") + 1] == "none"
    # Nothing secret in the URI itself (it can reach logs and error messages).
    assert "PRIVATE" not in uri


def test_password_only_server_is_never_handed_to_libssh(settings, db, tmp_path):
    # Discovery trades a password for a key; credentials that still hold only a
    # password (a discovery that did not finish) get a clear error, no libssh URI.
    settings.OVMWEB_HYPERVISOR_URI = ""
    settings.VAR_DIR = tmp_path
    server = _ssh_server(pk=9, password="secret")
    with pytest.raises(ConnectionFailed, match="only a password") as failure:
        connections.server_uri(server)
    assert "secret" not in str(failure.value)
    assert not (tmp_path / "hypervisor" / "server-9.key").exists()


def test_purge_removes_the_files_and_the_cached_connection(settings, db, tmp_path):
    settings.OVMWEB_HYPERVISOR_URI = ""
    settings.VAR_DIR = tmp_path
    server = _ssh_server(pk=11, private_key="PRIVATE")
    other = _ssh_server(pk=12, hostname="h2", private_key="OTHER")
    connections.server_uri(server)
    connections.server_uri(other)
    files = connections.server_files(server.pk)
    assert all(path.exists() for path in files)
    (files[0].parent / f".{files[0].name}.123.456").write_text("half-written")
    # A cached connection (any URI will do for the cache; test:///default needs no server).
    settings.OVMWEB_HYPERVISOR_URI = "test:///default"
    driver = connections.driver_for(server)

    connections.purge(server.pk)
    assert not any(path.exists() for path in files)
    assert not list(files[0].parent.glob(f".server-{server.pk}.*"))
    assert not driver.is_alive() and server.pk not in connections._drivers
    assert all(path.exists() for path in connections.server_files(other.pk))  # another server's files stay
    connections.purge(server.pk)  # nothing left to remove is not an error


def test_ssh_without_pinned_key_is_refused(settings, db):
    settings.OVMWEB_HYPERVISOR_URI = ""
    server = Server(pk=8, name="r2", hostname="h", transport="ssh")
    with pytest.raises(ConnectionFailed, match="pinned"):
        connections.server_uri(server)
