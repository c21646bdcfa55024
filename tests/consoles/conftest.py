from __future__ import annotations

import pytest
from channels.layers import channel_layers
from django.contrib.auth.models import Permission

from ovmweb.inventory import choices
from ovmweb.tunnels import openssh, pool
from tests import factories
from tests.consoles.targets import TcpTarget
from tests.tunnels.sshd import server_record, sshd  # noqa: F401


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    # Each test runs its own event loop; an in-memory layer holds asyncio queues
    # and group memberships from the previous one.
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()
    pool.close_all()


@pytest.fixture
def operator(db):
    """A user who may use VMs (view + change), not a superuser."""
    user = factories.UserFactory(username="operator")
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_virtualmachine", "change_virtualmachine"]))
    return user


@pytest.fixture
def viewer(db):
    user = factories.UserFactory(username="viewer")
    user.user_permissions.add(Permission.objects.get(codename="view_virtualmachine"))
    return user


@pytest.fixture
def stranger(db):
    """Authenticated, but without any VM permission."""
    return factories.UserFactory(username="stranger")


@pytest.fixture
def make_target():
    targets = []

    def make(mode: str, payload: bytes = b"") -> TcpTarget:
        target = TcpTarget(mode, payload)
        targets.append(target)
        return target

    yield make
    for target in targets:
        target.close()


@pytest.fixture
def local_server(db):
    return factories.ServerFactory(name="local", hostname="localhost", transport=choices.Transport.LOCAL)


@pytest.fixture
def ssh_server(db, sshd):  # noqa: F811
    return server_record(sshd)


@pytest.fixture
def openssh_server(ssh_server, settings):
    """The same sshd, the console's SSH hop through an OpenSSH master (OVMWEB_CONSOLE_SSH=openssh)."""
    settings.OVMWEB_CONSOLE_SSH = "openssh"
    yield ssh_server
    openssh.close_server(ssh_server.pk)


@pytest.fixture
def asyncssh_server(ssh_server, settings):
    """The same sshd, the console's SSH hop on asyncssh (OVMWEB_CONSOLE_SSH=asyncssh)."""
    settings.OVMWEB_CONSOLE_SSH = "asyncssh"
    return ssh_server


@pytest.fixture
def paramiko_server(ssh_server, settings):
    """The same sshd, the console's SSH hop on paramiko (OVMWEB_CONSOLE_SSH=paramiko)."""
    settings.OVMWEB_CONSOLE_SSH = "paramiko"
    return ssh_server


@pytest.fixture
def running_vm(db):
    def make(server, port: int, **fields):
        return factories.VirtualMachineFactory(
            server=server,
            server_pool=server.server_pool,
            status=choices.VmStatus.RUNNING,
            vnc_port=port,
            serial_port=port,
            **fields,
        )

    return make
