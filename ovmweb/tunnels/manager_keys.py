"""The manager's own SSH key on servers that were given to it with a password only.

libvirt's OpenSSH transport cannot take a password (ssh runs in batch mode, with
no terminal), and libvirt 9.0's in-process libssh transport crashed the whole
process (see ``ovmweb.hypervisor.connections``). So discovery with a password does
what other virtualization managers do: over the SSH session the password opened
(host key already pinned) it appends a key of the manager's own to the server
user's ``~/.ssh/authorized_keys``, checks that the key is accepted, and from then
on uses only the key; the password is not kept.

One key pair per server, not one per installation: the private key then lives
only (encrypted) in the row of the server it opens, so forgetting a server
deletes the only copy of its secret, and one server's key can be revoked without
re-keying every other server. Lines are recognised by the key's base64 blob,
never by their comment, so installing twice adds nothing and removing touches
only that one line. The comment ``ovmweb-manager@<install id>`` is for people
reading the file.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ovmweb.errors import OperationFailed

from . import ssh
from .credentials import install_id


@dataclass(frozen=True)
class ManagerKey:
    private_key: str  # OpenSSH private key format: what paramiko and ssh(1) both read
    public_key: str  # "ssh-ed25519 <base64>", without comment

    @property
    def blob(self) -> str:
        return self.public_key.split()[1]

    @property
    def authorized_keys_line(self) -> str:
        return f"{self.public_key} {comment()}"


def comment() -> str:
    return f"ovmweb-manager@{install_id()}"


def generate() -> ManagerKey:
    """A fresh Ed25519 key pair (not encrypted: it is stored encrypted with the credentials)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode("ascii")
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return ManagerKey(private_key=private, public_key=public.decode("ascii"))


def from_private_key(private_key: str) -> ManagerKey:
    """The pair of a stored private key (its public half is derived, never stored separately)."""
    key = serialization.load_ssh_private_key(private_key.encode("ascii"), password=None)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return ManagerKey(private_key=private_key, public_key=public.decode("ascii"))


# Run by the server user's login shell, so "~" is that user's home as sshd sees it.
# Creates ~/.ssh (0700) and the file (0600) only when missing: modes an administrator
# chose for existing ones are theirs. A file whose last line has no newline gets one
# first, or our line would be glued onto theirs.
_INSTALL = """set -e
umask 077
[ -d ~/.ssh ] || mkdir -m 700 ~/.ssh
f=~/.ssh/authorized_keys
if [ -f "$f" ] && grep -qF -- {blob} "$f"; then echo present; exit 0; fi
[ -e "$f" ] || {{ : >"$f"; chmod 600 "$f"; }}
if [ -s "$f" ] && [ -n "$(tail -c 1 "$f")" ]; then echo >>"$f"; fi
printf '%s\\n' {line} >>"$f"
echo added
"""

# Rewritten in place (not replaced by a new file), so owner, mode and any ACL stay.
_REMOVE = """set -e
f=~/.ssh/authorized_keys
[ -f "$f" ] && grep -qF -- {blob} "$f" || {{ echo absent; exit 0; }}
t=$(mktemp)
grep -vF -- {blob} "$f" >"$t" || true
cat "$t" >"$f"
rm -f "$t"
echo removed
"""


def _outcome(out: str) -> str:
    # The last line only: a user's shell startup files may print before the script runs.
    lines = out.strip().splitlines()
    return lines[-1].strip() if lines else ""


def install(client: paramiko.SSHClient, *, key: ManagerKey) -> bool:
    """Append ``key`` to authorized_keys over ``client`` unless it is there; True if it was added."""
    status, out, err = ssh.run(
        client, _INSTALL.format(blob=shlex.quote(key.blob), line=shlex.quote(key.authorized_keys_line))
    )
    if status != 0 or _outcome(out) not in {"added", "present"}:
        raise OperationFailed(
            f"cannot write ~/.ssh/authorized_keys: {(err or out).strip()[:500] or f'exit status {status}'}"
        )
    return _outcome(out) == "added"


def remove(client: paramiko.SSHClient, *, public_key: str) -> bool:
    """Remove the line of ``public_key`` from authorized_keys over ``client``; True if one was there."""
    blob = public_key.split()[1]
    status, out, err = ssh.run(client, _REMOVE.format(blob=shlex.quote(blob)))
    if status != 0:
        raise OperationFailed(
            f"cannot rewrite ~/.ssh/authorized_keys: {(err or out).strip()[:500] or f'exit status {status}'}"
        )
    return _outcome(out) == "removed"
