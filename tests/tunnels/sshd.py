"""The loopback sshd started by scripts/start-services.sh, as test fixtures.

Shared by tests/tunnels and tests/consoles (their conftests import these).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

SSH_DIR = Path(settings.BASE_DIR) / "var" / "ssh"


@pytest.fixture(scope="session")
def sshd() -> dict:
    """Connection facts of the real sshd on 127.0.0.1 (port, client key, pinned fingerprint)."""
    missing = [name for name in ("id_ed25519", "host_fingerprint", "port") if not (SSH_DIR / name).exists()]
    assert not missing, f"run `bash scripts/start-services.sh` first (missing var/ssh/{missing})"
    return {
        "hostname": "127.0.0.1",
        "port": int((SSH_DIR / "port").read_text().strip()),
        "username": "root",
        "private_key": (SSH_DIR / "id_ed25519").read_text(),
        "fingerprint": (SSH_DIR / "host_fingerprint").read_text().strip(),
        "host_key": " ".join((SSH_DIR / "ssh_host_ed25519_key.pub").read_text().split()[:2]),
    }


def server_record(facts: dict, **fields):
    """A Server row for this sshd (``facts`` as ``sshd`` gives them): transport SSH, its pinned
    host key, the client key as its credentials; ``fields`` override (name, server_pool...)."""
    from ovmweb.inventory import choices
    from ovmweb.tunnels.credentials import encrypt_credentials
    from tests import factories

    return factories.ServerFactory(
        **{
            "name": "sshd",
            "hostname": facts["hostname"],
            "ssh_port": facts["port"],
            "ssh_user": facts["username"],
            "transport": choices.Transport.SSH,
            "host_key_fingerprint": facts["fingerprint"],
            "host_key": facts.get("host_key", ""),
            "credentials_encrypted": encrypt_credentials({"private_key": facts["private_key"]}),
            **fields,
        }
    )
