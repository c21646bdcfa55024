"""Discovering a host and port that is already a server never rewrites it: 409 unless a
rediscovery is asked for by a user who may change that server; the transport never changes;
new credentials wait, encrypted, in the job's params and replace the old ones only when the
job succeeds (the success itself is proved with a real sshd in tests/integration/test_rediscovery.py)."""

import socket

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from ovmweb.inventory.models import Server
from ovmweb.jobs.models import Event, Job
from ovmweb.jobs.testing import run_pending_jobs
from ovmweb.tunnels.credentials import decrypt_credentials, encrypt_credentials
from tests import factories as f

pytestmark = pytest.mark.django_db

FINGERPRINT = "SHA256:" + "A" * 43
OTHER_FINGERPRINT = "SHA256:" + "B" * 43
OLD_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nold\n-----END OPENSSH PRIVATE KEY-----\n"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def known():
    """A discovered server reached with OLD_KEY, on a port where nothing answers now."""
    return f.ServerFactory(
        name="known",
        hostname="127.0.0.1",
        ssh_port=_closed_port(),
        ssh_user="root",
        host_key_fingerprint=FINGERPRINT,
        credentials_encrypted=encrypt_credentials({"private_key": OLD_KEY}),
        last_seen_at="2026-01-01T00:00:00Z",
    )


def _client(*codenames):
    user = f.UserFactory()
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="inventory", codename__in=codenames))
    client = APIClient()
    client.force_authenticate(user)
    return client


def _body(server, **extra):
    return {
        "hostname": server.hostname,
        "ssh_port": server.ssh_port,
        "transport": "ssh",
        "ssh_user": "intruder",
        "password": "attacker-chosen",
        "host_key_fingerprint": OTHER_FINGERPRINT,
        **extra,
    }


def _unchanged(server):
    row = Server.objects.get(pk=server.pk)
    assert (row.name, row.transport, row.ssh_user, row.host_key_fingerprint, row.status) == (
        "known",
        "ssh",
        "root",
        FINGERPRINT,
        server.status,
    )
    assert decrypt_credentials(row.credentials_encrypted) == {"private_key": OLD_KEY}


def test_discovering_a_known_server_is_refused_and_changes_nothing(known):
    response = _client("add_server", "change_server").post("/api/v1/servers/discover/", _body(known), format="json")
    assert response.status_code == 409, response.content
    assert "rediscover" in response.json()["detail"]
    _unchanged(known)
    assert not Job.objects.exists()


def test_rediscovery_needs_change_permission_on_the_server(known):
    response = _client("add_server").post("/api/v1/servers/discover/", _body(known, rediscover=True), format="json")
    # This user may not even see the server: 404, as for any object outside the user's roles,
    # so that a hostname probe does not tell which servers exist.
    assert response.status_code == 404
    _unchanged(known)
    assert not Job.objects.exists()


def test_rediscovery_of_a_server_one_may_see_needs_change_permission(known):
    response = _client("add_server", "view_server").post(
        "/api/v1/servers/discover/", _body(known, rediscover=True), format="json"
    )
    assert response.status_code == 403
    _unchanged(known)
    assert not Job.objects.exists()


def test_a_user_who_may_only_change_servers_cannot_discover_new_ones():
    body = {"hostname": "new.example.com", "password": "x", "host_key_fingerprint": FINGERPRINT}
    response = _client("change_server").post("/api/v1/servers/discover/", body, format="json")
    assert response.status_code == 403
    assert not Server.objects.exists()


def test_rediscovery_never_changes_the_transport(known):
    body = {"hostname": known.hostname, "ssh_port": known.ssh_port, "transport": "local", "rediscover": True}
    response = _client("change_server").post("/api/v1/servers/discover/", body, format="json")
    assert response.status_code == 409
    assert "Delete the server" in response.json()["detail"]
    _unchanged(known)


def test_rediscovery_neither_renames_nor_moves(known):
    client = _client("change_server")
    renamed = client.post("/api/v1/servers/discover/", _body(known, rediscover=True, name="other"), format="json")
    assert renamed.status_code == 400 and "name" in renamed.json()
    moved = client.post(
        "/api/v1/servers/discover/",
        _body(known, rediscover=True, server_pool=f.ServerPoolFactory().pk),
        format="json",
    )
    assert moved.status_code == 400 and "server_pool" in moved.json()
    _unchanged(known)


def test_new_credentials_wait_in_the_job_and_a_failed_rediscovery_keeps_the_old_ones(known):
    response = _client("change_server").post("/api/v1/servers/discover/", _body(known, rediscover=True), format="json")
    assert response.status_code == 202, response.content
    assert "attacker-chosen" not in response.content.decode()
    # Queued: the server is as it was; the new settings are in the job, encrypted.
    _unchanged(known)
    job = Job.objects.get(pk=response.json()["id"])
    assert "attacker-chosen" not in str(job.params) and "intruder" not in str(job.params)
    pending = decrypt_credentials(job.params["pending"])
    assert pending["ssh_user"] == "intruder" and pending["secret"]["password"] == "attacker-chosen"

    run_pending_jobs()  # nothing listens on the port: the rediscovery fails
    job.refresh_from_db()
    assert job.status == "FAILURE"
    _unchanged(known)
    assert "pending" not in job.params  # the credentials do not outlive the job
    event = Event.objects.get(type="server.rediscovery_failed")
    assert event.severity == "ERROR" and "earlier settings" in event.text


def test_a_first_discovery_keeps_credentials_only_in_the_job_until_it_succeeds(api):
    body = {
        "hostname": "127.0.0.1",
        "ssh_port": _closed_port(),
        "password": "first-password",
        "host_key_fingerprint": FINGERPRINT,
    }
    response = api.post("/api/v1/servers/discover/", body, format="json")
    assert response.status_code == 202, response.content
    server = Server.objects.get(hostname="127.0.0.1")
    assert server.credentials_encrypted == "" and server.status == "DISCOVERING"
    run_pending_jobs()
    assert not Server.objects.filter(pk=server.pk).exists()  # never discovered: nothing kept
    assert "pending" not in Job.objects.get(pk=response.json()["id"]).params
