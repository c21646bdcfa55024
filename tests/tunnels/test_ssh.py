import paramiko
import pytest

from ovmweb.errors import ConnectionFailed, HostKeyMismatch
from ovmweb.tunnels import ssh


def _connect(sshd, fingerprint):
    return ssh.connect(
        hostname=sshd["hostname"],
        port=sshd["port"],
        username=sshd["username"],
        private_key=sshd["private_key"],
        expected_fingerprint=fingerprint,
    )


def test_pinned_fingerprint_connects_and_runs(sshd):
    client = _connect(sshd, sshd["fingerprint"])
    try:
        status, out, err = ssh.run(client, "echo ovmweb-$((40+2)); echo oops >&2; exit 3")
    finally:
        client.close()
    assert (status, out, err) == (3, "ovmweb-42\n", "oops\n")


def test_aes_gcm_is_negotiated_and_weak_algorithms_are_not_offered(sshd):
    client = _connect(sshd, sshd["fingerprint"])
    try:
        transport = client.get_transport()
        # OpenSSH offers aes128-gcm; it is the fast choice for console streams.
        assert transport.remote_cipher == transport.local_cipher == "aes128-gcm@openssh.com"
        offered = transport.get_security_options()
        assert not [c for c in offered.ciphers if "cbc" in c or "3des" in c]
        assert not [m for m in offered.digests if "md5" in m or m.endswith("-96")]
    finally:
        client.close()


def test_fingerprint_in_other_spellings_is_accepted(sshd):
    # Administrators paste fingerprints with padding or without the prefix.
    bare = sshd["fingerprint"].split(":", 1)[1] + "="
    client = _connect(sshd, "  " + bare + " ")
    try:
        assert ssh.run(client, "true")[0] == 0
    finally:
        client.close()


def test_wrong_fingerprint_fails_closed_with_offered_fingerprint(sshd):
    wrong = "SHA256:" + "A" * 43
    with pytest.raises(HostKeyMismatch) as info:
        _connect(sshd, wrong)
    assert info.value.offered_fingerprint == sshd["fingerprint"]
    assert sshd["fingerprint"] in str(info.value)


def test_empty_pin_is_refused_not_trusted_on_first_use():
    with pytest.raises(ValueError):
        ssh.PinnedHostKeyPolicy("")


def test_policy_rejects_other_key_and_accepts_pinned_one():
    # A freshly generated key stands in for an impostor host.
    impostor = paramiko.RSAKey.generate(2048)
    policy = ssh.PinnedHostKeyPolicy(ssh.host_key_fingerprint(impostor))
    policy.missing_host_key(None, "h", impostor)  # accepted: no exception
    other = paramiko.RSAKey.generate(2048)
    with pytest.raises(HostKeyMismatch) as info:
        policy.missing_host_key(None, "h", other)
    assert info.value.offered_fingerprint == ssh.host_key_fingerprint(other)


def test_fingerprint_matches_openssh_and_paramiko(sshd):
    transport = paramiko.Transport((sshd["hostname"], sshd["port"]))
    try:
        transport.start_client(timeout=10)
        key = transport.get_remote_server_key()
    finally:
        transport.close()
    assert ssh.host_key_fingerprint(key) == sshd["fingerprint"] == key.fingerprint


def test_bad_credentials_fail_as_connection_failed(sshd):
    # A key sshd has never seen (paramiko cannot generate ed25519 keys).
    with pytest.raises(ConnectionFailed) as info:
        ssh.connect(
            hostname=sshd["hostname"],
            port=sshd["port"],
            username=sshd["username"],
            private_key=paramiko.RSAKey.generate(2048),
            expected_fingerprint=sshd["fingerprint"],
        )
    assert not isinstance(info.value, HostKeyMismatch)
    assert "authentication" in str(info.value)


def test_no_auto_add_or_warning_policy_anywhere():
    import pathlib

    import ovmweb

    root = pathlib.Path(ovmweb.__file__).parent
    offenders = [
        str(p) for p in root.rglob("*.py") if "AutoAddPolicy" in p.read_text() or "WarningPolicy" in p.read_text()
    ]
    assert offenders == []
