"""SSH to hypervisor servers: the one adapter over paramiko.

Host keys are pinned: a server is trusted only when it offers the host key
whose SHA256 fingerprint was recorded for it. Nothing is ever learned on first
use, no known_hosts file is read or written, and any other key fails closed
with ``HostKeyMismatch`` carrying the offered fingerprint so an administrator
can compare it out of band.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import socket

import paramiko

from ovmweb.errors import ConnectionFailed, HostKeyMismatch

# Tuned for console streams (measured, see the field notes): paramiko's 32 KiB
# packets and 2 MiB window halve throughput; windows past ~8 MiB make sshd the
# bottleneck instead.
WINDOW_SIZE = 6 * 1024 * 1024
MAX_PACKET_SIZE = 256 * 1024
KEEPALIVE_INTERVAL = 15
# Ciphers and MACs in order of preference. paramiko offers aes-ctr with
# hmac-sha2-256 first; without SHA extensions in the CPU that HMAC is most of
# a console download's cost. AES-GCM (authenticated, no separate MAC, AES-NI
# and PCLMUL in OpenSSL) measured 270-320 MiB/s at 3.2-3.5 CPU-s/GiB against
# 111 MiB/s at 9.1 for aes128-ctr + hmac-sha2-256 (a 256 MiB direct-tcpip
# download from the loopback sshd). CBC, 3DES, MD5 and truncated MACs are not
# offered at all.
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr")
MACS = ("hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com", "hmac-sha2-512", "hmac-sha2-256", "hmac-sha1")

_KEY_CLASSES = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)


def host_key_fingerprint(key: paramiko.PKey) -> str:
    """The key's SHA256 fingerprint exactly as OpenSSH prints it ("SHA256:<base64, unpadded>")."""
    return blob_fingerprint(key.asbytes())


def blob_fingerprint(blob: bytes) -> str:
    """The SHA256 fingerprint of a public key blob as OpenSSH prints it ("SHA256:<base64, unpadded>")."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


def normalize_fingerprint(fingerprint: str) -> str:
    """Accept what administrators paste ("SHA256:abc=", " abc ") and compare on one form."""
    value = fingerprint.strip()
    if value.upper().startswith("SHA256:"):
        value = value[len("SHA256:") :]
    return "SHA256:" + value.rstrip("=")


class PinnedHostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Accept exactly one host key, identified by its SHA256 fingerprint; reject everything else.

    SSHClient consults this policy for every connection because ovmweb never
    loads a known_hosts file, so this is the only gate a host key passes.
    """

    def __init__(self, expected_fingerprint: str):
        if not expected_fingerprint or not expected_fingerprint.strip():
            # An empty pin would be trust-on-first-use by accident.
            raise ValueError("a host key fingerprint is required")
        self.expected_fingerprint = normalize_fingerprint(expected_fingerprint)

    def check(self, hostname: str, key: paramiko.PKey) -> None:
        offered = host_key_fingerprint(key)
        # Fingerprints are public; compare in constant time anyway, it costs nothing.
        if not _constant_time_equal(offered, self.expected_fingerprint):
            raise HostKeyMismatch(
                f"host key of {hostname} is {offered}, expected {self.expected_fingerprint}",
                offered_fingerprint=offered,
            )

    def missing_host_key(self, client, hostname, key):
        self.check(hostname, key)


def _constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def load_private_key(text: str, password: str | None = None) -> paramiko.PKey:
    """Parse an OpenSSH/PEM private key of any type paramiko supports."""
    last_error: Exception | None = None
    for cls in _KEY_CLASSES:
        try:
            return cls.from_private_key(io.StringIO(text), password=password)
        except (paramiko.SSHException, ValueError) as exc:
            last_error = exc
    raise ConnectionFailed(f"unusable private key: {type(last_error).__name__}")


def _tuned_transport(sock, **kwargs) -> paramiko.Transport:
    kwargs.setdefault("default_window_size", WINDOW_SIZE)
    kwargs.setdefault("default_max_packet_size", MAX_PACKET_SIZE)
    transport = paramiko.Transport(sock, **kwargs)
    options = transport.get_security_options()
    options.ciphers = CIPHERS
    options.digests = MACS
    return transport


def connect(
    *,
    hostname: str,
    port: int,
    username: str,
    password: str | None = None,
    private_key: str | paramiko.PKey | None = None,
    expected_fingerprint: str,
    timeout: float = 10,
) -> paramiko.SSHClient:
    """An authenticated SSH client to a server whose host key matches the pin.

    Raises ``HostKeyMismatch`` for any other host key and ``ConnectionFailed``
    for network or authentication failures (messages never contain secrets).
    """
    policy = PinnedHostKeyPolicy(expected_fingerprint)
    pkey = load_private_key(private_key) if isinstance(private_key, str) else private_key
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(policy)
    try:
        sock = socket.create_connection((hostname, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.connect(
            hostname,
            port=port,
            username=username,
            password=password,
            pkey=pkey,
            sock=sock,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            allow_agent=False,
            look_for_keys=False,
            transport_factory=_tuned_transport,
        )
    except HostKeyMismatch:
        client.close()
        raise
    except paramiko.AuthenticationException as exc:
        client.close()
        raise ConnectionFailed(f"SSH authentication to {username}@{hostname}:{port} failed") from exc
    except (OSError, paramiko.SSHException, EOFError) as exc:
        client.close()
        raise ConnectionFailed(f"SSH connection to {hostname}:{port} failed: {exc}") from exc
    transport = client.get_transport()
    transport.set_keepalive(KEEPALIVE_INTERVAL)
    return client


def run(client: paramiko.SSHClient, command: str, timeout: float = 30) -> tuple[int, str, str]:
    """Run one command; returns (exit status, stdout, stderr). Raises ConnectionFailed on timeout."""
    try:
        # Reviewed (bandit B601): callers pass constants or shlex-quoted words (manager_keys, server_files,
        # operations.servers); nothing from a request reaches a shell unquoted.
        stdin, stdout, stderr = client.exec_command(command, timeout=timeout)  # nosec B601
        stdin.close()
        out = stdout.read().decode("utf-8", "replace")
        err = stderr.read().decode("utf-8", "replace")
        status = stdout.channel.recv_exit_status()
    except TimeoutError as exc:
        raise ConnectionFailed(f"command timed out after {timeout}s") from exc
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise ConnectionFailed(f"SSH command failed: {exc}") from exc
    return status, out, err


def known_hosts_line(*, hostname: str, port: int, host_key: str) -> str:
    """The known_hosts line pinning ``host_key`` ("type base64") for ``hostname:port``."""
    if not hostname or any(ch.isspace() or ch in ",*?!#[]" for ch in hostname) or len(host_key.split()) != 2:
        # One line, one host, one key: nothing in a host name may add a pattern or another line.
        raise ConnectionFailed(f"refusing to pin a host key for host name {hostname!r}")
    host = hostname if port == 22 else f"[{hostname}]:{port}"
    return f"{host} {host_key.strip()}"


def openssh_options(*, known_hosts, keyfile) -> list[str]:
    """OpenSSH client options for a pinned, non-interactive connection with one key.

    Used by libvirt's ssh wrapper (hypervisor/connections.py) and the consoles' SSH masters
    (openssh.py); given first on the command line they win over anything added after them,
    and ``-F none`` reads no user or system config at all."""
    return [
        "-F",
        "none",
        "-o",
        f"UserKnownHostsFile={ssh_path(known_hosts)}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "UpdateHostKeys=no",
        "-o",
        "CheckHostIP=no",  # no second lookup under the bare IP address
        "-o",
        "HashKnownHosts=no",
        "-o",
        "BatchMode=yes",  # never prompt: no terminal in a web console
        "-o",
        "PasswordAuthentication=no",
        "-o",
        "KbdInteractiveAuthentication=no",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "IdentityAgent=none",
        # Nothing of this machine's is offered to the server (defaults already, said anyway).
        "-o",
        "ForwardAgent=no",
        "-o",
        "ForwardX11=no",
        "-o",
        "ConnectTimeout=10",
        # Dead peers are noticed by ssh itself too, not only by libvirt's keepalive.
        "-o",
        "ServerAliveInterval=10",
        "-o",
        "ServerAliveCountMax=3",
        # Not -i: ssh checks that path before expanding its %-tokens, so it could not hold a %.
        "-o",
        f"IdentityFile={ssh_path(keyfile)}",
    ]


def ssh_path(path) -> str:
    """A file path for ssh's options, which expand %-tokens in paths (a literal % is written %%)."""
    return str(path).replace("%", "%%")
