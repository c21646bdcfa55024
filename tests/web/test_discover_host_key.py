"""Discover Server: "Fetch host key" reads the key the real sshd on 127.0.0.1 offers (no
login), the administrator compares and confirms it; nothing is trusted without that."""

from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError

from ovmweb.inventory.services.servers import server_scan_host_key
from ovmweb.jobs.models import Job

SSH_DIR = Path(settings.BASE_DIR) / "var" / "ssh"
pytestmark = pytest.mark.django_db


@pytest.fixture
def sshd():
    return {
        "port": int((SSH_DIR / "port").read_text()),
        "fingerprint": (SSH_DIR / "host_fingerprint").read_text().strip(),
        "private_key": (SSH_DIR / "id_ed25519").read_text(),
    }


def test_scan_reads_the_fingerprint_sshd_offers(sshd):
    offered = server_scan_host_key(hostname="127.0.0.1", port=sshd["port"])
    assert offered == {"key_type": "ssh-ed25519", "fingerprint": sshd["fingerprint"]}


def test_scan_of_a_port_without_sshd_is_a_hostname_error():
    import socket

    with socket.socket() as s:  # a port that refuses: bound, not listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        with pytest.raises(ValidationError) as exc:
            server_scan_host_key(hostname="127.0.0.1", port=port, timeout=2)
    assert "hostname" in exc.value.message_dict


def test_fetch_button_shows_fingerprint_and_asks_for_confirmation(admin_client, sshd):
    response = admin_client.post(
        "/servers/discover/host-key/", {"hostname": "127.0.0.1", "ssh_port": sshd["port"]}, HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert sshd["fingerprint"] in html and "ssh-ed25519" in html
    assert 'name="scanned_fingerprint"' in html and 'name="confirm_scanned"' in html
    assert "checked" not in html  # never pre-confirmed


def test_fetch_error_is_shown_in_the_fragment(admin_client):
    response = admin_client.post("/servers/discover/host-key/", {"hostname": "", "ssh_port": 22})
    assert response.status_code == 200 and 'role="alert"' in response.content.decode()


def test_fetched_key_unconfirmed_is_refused_confirmed_is_pinned(admin_client, sshd):
    data = {
        "hostname": "127.0.0.1",
        "transport": "ssh",
        "ssh_port": sshd["port"],
        "ssh_user": "root",
        "private_key": sshd["private_key"],
        "scanned_fingerprint": sshd["fingerprint"],
        "name": "hv-scan",
    }
    response = admin_client.post("/servers/discover/", data)
    assert response.status_code == 200
    assert 'id="id_confirm_scanned_error"' in response.content.decode()
    assert sshd["fingerprint"] in response.content.decode()  # the offer is still shown to compare
    assert not Job.objects.exists()
    response = admin_client.post("/servers/discover/", {**data, "confirm_scanned": "on"})
    assert response.status_code == 302, response.content.decode()[:2000]
    job = Job.objects.get(operation="server.discover")
    assert job.target.host_key_fingerprint == sshd["fingerprint"]


def test_typed_fingerprint_wins_over_the_fetched_one(admin_client, sshd):
    typed = "SHA256:" + "A" * 43
    admin_client.post(
        "/servers/discover/",
        {
            "hostname": "127.0.0.1",
            "transport": "ssh",
            "ssh_port": sshd["port"],
            "password": "x",
            "scanned_fingerprint": sshd["fingerprint"],
            "confirm_scanned": "on",
            "host_key_fingerprint": typed,
        },
    )
    job = Job.objects.get(operation="server.discover")
    assert job.target.host_key_fingerprint == typed
