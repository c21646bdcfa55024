"""A server's address and SSH user reach ssh's command line and known_hosts lines: only a host name,
an IP address and a user name get in (a discovery with anything else is refused before it is recorded)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from ovmweb.errors import ConnectionFailed
from ovmweb.inventory.models import Server
from ovmweb.inventory.services import servers
from ovmweb.tunnels.ssh import known_hosts_line
from tests import factories

pytestmark = pytest.mark.django_db

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHhvc3RrZXlob3N0a2V5aG9zdGtleWhvc3RrZXlo"


def discover(**fields):
    params = {
        "user": factories.UserFactory(is_superuser=True),
        "hostname": "hv-01.example.com",
        "transport": "ssh",
        "ssh_user": "root",
        "password": "secret-pw-123",
        "host_key_fingerprint": "SHA256:" + "A" * 43,
        **fields,
    }
    return servers.server_discover(**params)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        *[
            ("hostname", value)
            for value in ("hv01 ssh-ed25519 AAAA", f"1.2.3.4 {KEY}\n* {KEY}", "-oProxyCommand=sh", "*", "a,b", "[::1]")
        ],
        ("hostname", "host\n"),
        *[("ssh_user", value) for value in ("root -oProxyCommand=sh", "-l", "a b", "root\n", "")],
    ],
)
def test_an_address_or_user_that_is_not_one_is_refused(field, value):
    with pytest.raises(ValidationError) as info:
        discover(**{field: value})
    assert field in info.value.message_dict
    assert not Server.objects.exists()


@pytest.mark.parametrize("hostname", ["hv-01.example.com", "10.0.0.5", "fe80::1", "2001:db8::10", "localhost"])
def test_host_names_and_addresses_are_accepted(hostname):
    discover(hostname=hostname)
    assert Server.objects.get().hostname == hostname


def test_a_known_hosts_line_holds_one_host_and_one_key():
    assert known_hosts_line(hostname="hv", port=2222, host_key=KEY) == f"[hv]:2222 {KEY}"
    for hostname in ("a b", "a\nb", "*", "a,b", ""):
        with pytest.raises(ConnectionFailed):
            known_hosts_line(hostname=hostname, port=22, host_key=KEY)
    with pytest.raises(ConnectionFailed):
        known_hosts_line(hostname="hv", port=22, host_key=f"{KEY}\n* {KEY}")
