"""Password-only servers get ovmweb's own SSH key at discovery; deleting a server cleans up.

Against a real sshd that accepts root's password: a second sshd (same pinned host
key as the main one) in a mount namespace of its own, where /etc/passwd and
/etc/shadow are copies giving root a test password and a home directory under
tmp_path. So the machine's real root account, password and authorized_keys are
never touched, and every test sees the authorized_keys file it set up.
"""

import os
import stat
import subprocess
from pathlib import Path

import pytest

from ovmweb.errors import Conflict
from ovmweb.hypervisor import connections
from ovmweb.inventory.models import Server
from ovmweb.inventory.services import servers
from ovmweb.jobs.models import Event
from ovmweb.jobs.testing import run_pending_jobs
from ovmweb.tunnels import manager_keys, pool
from ovmweb.tunnels.credentials import decrypt_credentials
from tests.factories import RepositoryFactory, VirtualMachineFactory

from .conftest import SSH_DIR, free_port, stop_process, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PASSWORD = "ovmweb-test-password"


class PasswordSshd:
    def __init__(self, tmp_path: Path, *, extra_config: str = "", read_only_home: bool = False):
        self.dir = tmp_path / "sshd"
        self.home = self.dir / "home"
        self.home.mkdir(parents=True, mode=0o700)
        self.port = free_port()
        crypted = subprocess.run(
            ["openssl", "passwd", "-6", "-stdin"], input=PASSWORD, text=True, capture_output=True, check=True
        ).stdout.strip()
        (self.dir / "passwd").write_text(
            "".join(
                ":".join(f[:5] + [str(self.home)] + f[6:]) + "\n" if f[0] == "root" else line
                for line in Path("/etc/passwd").read_text().splitlines(keepends=True)
                for f in [line.rstrip("\n").split(":")]
            )
        )
        shadow = self.dir / "shadow"
        shadow.write_text(
            "".join(
                ":".join([f[0], crypted, *f[2:]]) + "\n" if f[0] == "root" else line
                for line in Path("/etc/shadow").read_text().splitlines(keepends=True)
                for f in [line.rstrip("\n").split(":")]
            )
        )
        shadow.chmod(0o600)
        config = self.dir / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {SSH_DIR / 'ssh_host_ed25519_key'}\n"
            "PermitRootLogin yes\nPasswordAuthentication yes\nPubkeyAuthentication yes\nUsePAM no\n"
            f"PidFile {self.dir / 'sshd.pid'}\n{extra_config}"
        )
        mounts = f"mount --bind {self.dir / 'passwd'} /etc/passwd && mount --bind {shadow} /etc/shadow"
        if read_only_home:
            mounts += f" && mount --bind {self.home} {self.home} && mount -o remount,bind,ro {self.home}"
        self.proc = subprocess.Popen(
            [
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                f"{mounts} && exec /usr/sbin/sshd -D -e -f {config}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert wait_for(self._listening, 10), "password sshd did not start"

    def _listening(self) -> bool:
        import socket

        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    @property
    def authorized_keys(self) -> Path:
        return self.home / ".ssh" / "authorized_keys"

    def stop(self) -> None:
        if self.proc.poll() is None:
            stop_process(self.proc)


@pytest.fixture
def password_sshd(tmp_path):
    started = []

    def start(**kwargs) -> PasswordSshd:
        started.append(PasswordSshd(tmp_path / str(len(started)), **kwargs))
        return started[-1]

    yield start
    pool.close_all()
    for sshd in started:
        sshd.stop()


def _discover(user, sshd: PasswordSshd, fingerprint: str, **credentials):
    credentials = credentials or {"password": PASSWORD}
    job = servers.server_discover(
        user=user,
        hostname="127.0.0.1",
        transport="ssh",
        ssh_port=sshd.port,
        ssh_user="root",
        host_key_fingerprint=fingerprint,
        name="by-password",
        # The second discovery of the same host and port is a rediscovery, asked for.
        rediscover=Server.objects.filter(name="by-password").exists(),
        **credentials,
    )
    run_pending_jobs()
    job.refresh_from_db()
    return job


def _our_lines(sshd: PasswordSshd) -> list[str]:
    return [line for line in sshd.authorized_keys.read_text().splitlines() if "ovmweb-manager@" in line]


def test_password_discovery_installs_a_key_once_and_libvirt_uses_openssh(
    admin_user, ssh_access, real_hypervisor, password_sshd
):
    sshd = password_sshd()
    job = _discover(admin_user, sshd, ssh_access["fingerprint"])
    assert job.status == "SUCCESS", job.error
    server = Server.objects.get(name="by-password")

    # The key is in root's authorized_keys, with modes sshd accepts, exactly once.
    assert stat.S_IMODE(os.stat(sshd.home / ".ssh").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(sshd.authorized_keys).st_mode) == 0o600
    lines = _our_lines(sshd)
    assert len(lines) == 1 and lines[0].endswith(manager_keys.comment()), lines
    # Only the key is kept: the password is gone from the stored credentials.
    secret = decrypt_credentials(server.credentials_encrypted)
    assert secret.get("manager_key") is True and "password" not in secret
    key = manager_keys.from_private_key(secret["private_key"])
    assert lines[0].split()[:2] == key.public_key.split()
    assert PASSWORD not in job.log and PASSWORD not in job.error

    # libvirt over OpenSSH (whose wrapper forbids passwords), never libssh; a call works.
    driver = connections.driver_for(server)
    assert driver.uri.startswith(f"qemu+ssh://root@127.0.0.1:{sshd.port}/system?")
    assert "libssh" not in driver.uri
    assert isinstance(driver.list_domains(), list)
    # The console tunnels log in with the same key.
    assert pool.transport_for(server).is_authenticated()

    # Rediscovery with the password again reuses the key: still one line.
    job = _discover(admin_user, sshd, ssh_access["fingerprint"])
    assert job.status == "SUCCESS", job.error
    assert "already in" in job.log
    server.refresh_from_db()
    assert decrypt_credentials(server.credentials_encrypted)["private_key"] == key.private_key
    assert _our_lines(sshd) == lines


def test_existing_authorized_keys_are_kept_as_they_were(admin_user, ssh_access, real_hypervisor, password_sshd):
    sshd = password_sshd()
    (sshd.home / ".ssh").mkdir()
    (sshd.home / ".ssh").chmod(0o755)  # explicit: the test process runs with ovmweb's umask 077
    theirs = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ0m6K3z2Yb2dV2Q5Vf7xC6n8T6k0vYyq0b1dW0qZ2Qb admin@elsewhere"
    sshd.authorized_keys.write_text(theirs)  # no final newline
    sshd.authorized_keys.chmod(0o640)
    job = _discover(admin_user, sshd, ssh_access["fingerprint"])
    assert job.status == "SUCCESS", job.error
    lines = sshd.authorized_keys.read_text().splitlines()
    assert lines[0] == theirs and len(lines) == 2 and "ovmweb-manager@" in lines[1]
    assert stat.S_IMODE(os.stat(sshd.home / ".ssh").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(sshd.authorized_keys).st_mode) == 0o640


def test_a_key_the_server_ignores_fails_discovery_and_is_taken_back(
    admin_user, ssh_access, real_hypervisor, password_sshd
):
    sshd = password_sshd(extra_config="AuthorizedKeysFile /nonexistent/%u\n")
    job = _discover(admin_user, sshd, ssh_access["fingerprint"])
    assert job.status == "FAILURE"
    assert "still refuses it" in job.error and "AuthorizedKeysFile" in job.error, job.error
    assert not Server.objects.filter(name="by-password").exists()
    assert _our_lines(sshd) == []  # added, found useless, removed again


def test_a_read_only_home_fails_discovery_clearly(admin_user, ssh_access, real_hypervisor, password_sshd):
    sshd = password_sshd(read_only_home=True)
    job = _discover(admin_user, sshd, ssh_access["fingerprint"])
    assert job.status == "FAILURE"
    assert "Cannot install ovmweb's SSH key" in job.error and "Read-only file system" in job.error, job.error
    assert not Server.objects.filter(name="by-password").exists()
    assert Event.objects.filter(type="server.discovery_failed", severity="ERROR").exists()


def test_rediscovery_with_an_administrators_key_retires_ovmwebs_key(
    admin_user, ssh_access, real_hypervisor, password_sshd
):
    sshd = password_sshd()
    assert _discover(admin_user, sshd, ssh_access["fingerprint"]).status == "SUCCESS"
    with sshd.authorized_keys.open("a") as fh:
        fh.write((SSH_DIR / "id_ed25519.pub").read_text())
    job = _discover(admin_user, sshd, ssh_access["fingerprint"], private_key=ssh_access["private_key"])
    assert job.status == "SUCCESS", job.error
    assert _our_lines(sshd) == []
    assert (SSH_DIR / "id_ed25519.pub").read_text().split()[1] in sshd.authorized_keys.read_text()
    secret = decrypt_credentials(Server.objects.get(name="by-password").credentials_encrypted)
    assert secret == {"private_key": ssh_access["private_key"]}


def test_deleting_a_server_removes_its_key_files_and_connections(
    admin_user, ssh_access, real_hypervisor, password_sshd
):
    sshd = password_sshd()
    assert _discover(admin_user, sshd, ssh_access["fingerprint"]).status == "SUCCESS"
    server = Server.objects.get(name="by-password")
    driver = connections.driver_for(server)
    transport = pool.transport_for(server)
    files = connections.server_files(server.pk)
    assert all(path.exists() for path in files)
    stopped = VirtualMachineFactory(server=server, status="STOPPED")  # stopped VMs do not hold a server

    job = servers.server_delete(server=server, user=admin_user)
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == "SUCCESS", job.error
    assert not Server.objects.filter(pk=server.pk).exists()
    assert _our_lines(sshd) == []
    assert not any(path.exists() for path in files)
    assert not driver.is_alive() and not transport.is_active()
    assert server.pk not in connections._drivers and server.pk not in pool._entries
    stopped.refresh_from_db()
    assert stopped.server_id is None
    event = Event.objects.get(type="server.deleted")
    assert event.severity == "INFO" and "by-password" in event.text


def test_deleting_an_unreachable_server_says_the_key_stayed(admin_user, ssh_access, real_hypervisor, password_sshd):
    sshd = password_sshd()
    assert _discover(admin_user, sshd, ssh_access["fingerprint"]).status == "SUCCESS"
    server = Server.objects.get(name="by-password")
    connections.driver_for(server)
    sshd.stop()
    job = servers.server_delete(server=server, user=admin_user)
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == "SUCCESS", job.error
    assert not Server.objects.filter(pk=server.pk).exists()
    assert not any(path.exists() for path in connections.server_files(server.pk))
    event = Event.objects.get(type="server.deleted")
    assert event.severity == "WARNING" and manager_keys.comment() in event.text and "by hand" in event.text
    assert len(_our_lines(sshd)) == 1  # the server really was out of reach


def test_a_server_running_vms_is_not_deleted(admin_user, ssh_access, real_hypervisor, password_sshd):
    sshd = password_sshd()
    assert _discover(admin_user, sshd, ssh_access["fingerprint"]).status == "SUCCESS"
    server = Server.objects.get(name="by-password")
    busy = VirtualMachineFactory(name="busy", server=server, status="RUNNING")
    with pytest.raises(Conflict, match="busy"):
        servers.server_delete(server=server, user=admin_user)
    busy.delete()
    repo = RepositoryFactory(kind="LOCAL", server=server)
    with pytest.raises(Conflict, match="local repositories"):
        servers.server_delete(server=server, user=admin_user)
    repo.delete()
    assert Server.objects.filter(pk=server.pk).exists()
    assert all(path.exists() for path in connections.server_files(server.pk))


def test_keys_are_named_after_a_stable_install_id(settings):
    from ovmweb.tunnels.credentials import install_id

    first = install_id()
    assert first == install_id() and len(first) == 12
    assert manager_keys.comment() == f"ovmweb-manager@{first}"
    assert settings.SECRET_KEY not in first
    settings.OVMWEB_CREDENTIALS_KEY = "x" * 43 + "="
    assert install_id() != first  # another installation (another credentials key), another name
    key = manager_keys.generate()
    assert manager_keys.from_private_key(key.private_key) == key and key.public_key.startswith("ssh-ed25519 ")


def test_a_first_discovery_failing_after_the_key_was_added_takes_it_back(
    admin_user, ssh_access, real_hypervisor, password_sshd, settings, tmp_path
):
    sshd = password_sshd()
    # SSH and the key work; libvirt, opened next, does not (a libvirt URI that cannot open).
    settings.OVMWEB_HYPERVISOR_URI = f"test://{tmp_path}/no-such-definition.xml"
    job = _discover(admin_user, sshd, ssh_access["fingerprint"])
    assert job.status == "FAILURE"
    assert "added to" in job.log and "removed from the server again" in job.log, job.log
    assert not Server.objects.filter(name="by-password").exists()
    assert _our_lines(sshd) == []
