"""Rediscovery against the real loopback sshd: credentials that fail change nothing (the
server is still reached with the old ones); credentials that work replace them on success."""

import os
import subprocess
import tempfile

import pytest

from ovmweb.hypervisor import connections
from ovmweb.inventory.models import Server
from ovmweb.inventory.services import servers
from ovmweb.jobs.models import Event
from ovmweb.jobs.testing import run_pending_jobs
from ovmweb.tunnels.credentials import decrypt_credentials

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _discover(user, access, **overrides):
    params = {
        "hostname": "127.0.0.1",
        "transport": "ssh",
        "ssh_port": access["port"],
        "ssh_user": "root",
        "private_key": access["private_key"],
        "host_key_fingerprint": access["fingerprint"],
        **overrides,
    }
    job = servers.server_discover(user=user, **params)
    run_pending_jobs()
    job.refresh_from_db()
    return job


def _unknown_key() -> str:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "key")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
        return open(path).read()


def test_failed_rediscovery_keeps_the_old_credentials_and_a_good_one_replaces_them(
    admin_user, ssh_access, real_hypervisor
):
    assert _discover(admin_user, ssh_access, name="again").status == "SUCCESS"
    server = Server.objects.get(name="again")
    before = (server.credentials_encrypted, server.host_key, server.ssh_user)

    failed = _discover(admin_user, ssh_access, private_key=_unknown_key(), rediscover=True)
    assert failed.status == "FAILURE"
    assert "authentication" in failed.error.lower()
    server.refresh_from_db()
    assert (server.credentials_encrypted, server.host_key, server.ssh_user) == before
    assert server.status == "RUNNING"
    assert Event.objects.filter(type="server.rediscovery_failed", object_id=server.pk).exists()
    # Still reached as before: libvirt over SSH logs in with the key it had.
    connections.forget(server)
    assert isinstance(connections.driver_for(server).list_domains(), list)

    # The same key given again: the rediscovery succeeds and the stored secret is the one given.
    done = _discover(admin_user, ssh_access, rediscover=True)
    assert done.status == "SUCCESS", done.error
    server.refresh_from_db()
    assert decrypt_credentials(server.credentials_encrypted) == {"private_key": ssh_access["private_key"]}
    assert "pending" not in done.params and "pending" not in failed.params
