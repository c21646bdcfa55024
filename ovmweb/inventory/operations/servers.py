"""Job operations on servers: ``server.discover``, ``server.delete``."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from django.conf import settings
from django.utils.translation import gettext as _

from ovmweb.errors import ConnectionFailed, HostKeyMismatch, OperationFailed
from ovmweb.hypervisor import connections
from ovmweb.jobs.registry import JobContext, operation

from ..choices import Transport
from ..models import Server
from ..services import servers as server_services


def parse_cpuinfo(text: str) -> dict:
    """Vendor, family, model, model name and logical CPU count from /proc/cpuinfo."""
    facts: dict = {"cores": 0}
    for line in text.splitlines():
        key, _sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor":
            facts["cores"] += 1
        elif key == "vendor_id":
            facts.setdefault("vendor", value)
        elif key == "cpu family" and value.isdigit():
            facts.setdefault("family", int(value))
        elif key == "model" and value.isdigit():
            facts.setdefault("model", int(value))
        elif key == "model name":
            facts.setdefault("model_name", value)
        elif key == "flags":
            facts["virt_flags"] = facts.get("virt_flags", False) or bool({"vmx", "svm"} & set(value.split()))
    return facts


def parse_meminfo(text: str) -> int:
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


# Disk leases: libvirt's QEMU driver uses the lockd lock manager and virtlockd runs (its socket).
_LOCKD_RE = re.compile(r'^\s*lock_manager\s*=\s*"lockd"', re.M)
LEASES_PROBE = (
    "grep -Eq '^[[:space:]]*lock_manager[[:space:]]*=[[:space:]]*\"lockd\"' /etc/libvirt/qemu.conf "
    "&& test -S /run/libvirt/virtlockd-sock"
)


def local_disk_leases(etc: str = "/etc/libvirt", run: str = "/run/libvirt") -> bool:
    """``LEASES_PROBE`` on this machine (the ``local`` transport)."""
    try:
        conf = Path(etc, "qemu.conf").read_text()
    except OSError:
        return False
    return bool(_LOCKD_RE.search(conf)) and Path(run, "virtlockd-sock").is_socket()


def _ssh_probe(ctx: JobContext, server: Server, secret: dict, added_keys: list) -> tuple[str, str, str, dict, bool]:
    """(cpuinfo, meminfo, host key, credentials to keep, disk leases) read over SSH with the pinned host key.

    Also settles the credentials: a password is traded for a key of the manager's
    own (installed over this session, and appended to ``added_keys`` if it was not
    there yet), and a retired manager key is removed. What is to be kept is
    returned, not stored: only a discovery that succeeds stores it."""
    from ovmweb.tunnels import ssh

    client = ssh.connect(
        hostname=server.hostname,
        port=server.ssh_port,
        username=server.ssh_user,
        password=secret.get("password"),
        private_key=secret.get("private_key"),
        expected_fingerprint=server.host_key_fingerprint,
    )
    try:
        key = client.get_transport().get_remote_server_key()
        ctx.log(_("Host key %(fp)s verified.") % {"fp": ssh.host_key_fingerprint(key)})
        # What matters is a running daemon (its socket), not an installed binary.
        status, _out, _err = ssh.run(client, "test -S /run/libvirt/libvirt-sock || test -S /run/libvirt/virtqemud-sock")
        if status != 0:
            raise OperationFailed(
                _(
                    "No libvirt daemon on %(host)s (no libvirt socket in /run/libvirt): install and start "
                    "libvirt-daemon and QEMU there."
                )
                % {"host": server.hostname}
            )
        _s, cpuinfo, _e = ssh.run(client, "cat /proc/cpuinfo")
        _s, meminfo, _e = ssh.run(client, "cat /proc/meminfo")
        leases = ssh.run(client, LEASES_PROBE)[0] == 0
        if secret.get("password"):
            keep = _install_manager_key(ctx, server, client, secret, added_keys)
        elif secret.get("retire_public_key"):
            keep = _retire_manager_key(ctx, client, secret)
        else:
            keep = {"private_key": secret.get("private_key")}
        return cpuinfo, meminfo, f"{key.get_name()} {key.get_base64()}", keep, leases
    finally:
        client.close()


def _install_manager_key(ctx: JobContext, server: Server, client, secret: dict, added_keys: list) -> dict:
    """Install the manager's key over the password session, prove it works; returns it (to keep instead
    of the password).

    Any failure fails the discovery, naming why: falling back to libvirt's libssh
    transport (the only one that takes a password) would bring back the crash that
    made ovmweb drop it, and an administrator would not see that until it happened."""
    from ovmweb.tunnels import manager_keys, ssh

    where = _("~/.ssh/authorized_keys of %(user)s on %(host)s") % {"user": server.ssh_user, "host": server.hostname}
    key = (
        manager_keys.from_private_key(secret["manager_private_key"])
        if secret.get("manager_private_key")
        else manager_keys.generate()
    )
    try:
        added = manager_keys.install(client, key=key)
    except (OperationFailed, ConnectionFailed) as exc:
        raise OperationFailed(
            _(
                "Cannot install ovmweb's SSH key in %(where)s (%(error)s). ovmweb does not manage "
                "servers with a password alone: make that file writable, or discover the server "
                "with a private key."
            )
            % {"where": where, "error": exc}
        ) from exc
    ctx.log(
        (
            _("ovmweb's SSH key (%(comment)s) added to %(where)s.")
            if added
            else _("ovmweb's SSH key (%(comment)s) is already in %(where)s.")
        )
        % {"comment": manager_keys.comment(), "where": where}
    )
    try:
        ssh.connect(
            hostname=server.hostname,
            port=server.ssh_port,
            username=server.ssh_user,
            private_key=key.private_key,
            expected_fingerprint=server.host_key_fingerprint,
        ).close()
    except ConnectionFailed as exc:
        if added:  # a line the server ignores is clutter for its administrator
            try:
                manager_keys.remove(client, public_key=key.public_key)
            except (OperationFailed, ConnectionFailed):
                pass
        raise OperationFailed(
            _(
                "ovmweb's SSH key was written to %(where)s but the server still refuses it (%(error)s): "
                "its sshd may read keys from another AuthorizedKeysFile or refuse public key "
                "authentication. ovmweb does not manage servers with a password alone: discover the "
                "server with a private key it accepts."
            )
            % {"where": where, "error": exc}
        ) from exc
    if added:
        added_keys.append(key)
    ctx.log(_("Key authentication verified; the password is not kept."))
    # manager_key: ovmweb installed it, so it leaves the server again when the server is forgotten.
    return {"private_key": key.private_key, "manager_key": True}


def _remove_manager_key(server: Server, key) -> None:
    """Remove ovmweb's ``key`` from the server, logged in with that key itself.

    Raises ``ConnectionFailed`` / ``OperationFailed`` when the server cannot be reached or the file not rewritten."""
    from ovmweb.tunnels import manager_keys, ssh

    client = ssh.connect(
        hostname=server.hostname,
        port=server.ssh_port,
        username=server.ssh_user,
        private_key=key.private_key,
        expected_fingerprint=server.host_key_fingerprint,
    )
    try:
        manager_keys.remove(client, public_key=key.public_key)
    finally:
        client.close()


def _retire_manager_key(ctx: JobContext, client, secret: dict) -> dict:
    """The administrator gave a key of their own: ovmweb's earlier key leaves the server; returns the key to keep."""
    from ovmweb.tunnels import manager_keys

    try:
        if manager_keys.remove(client, public_key=secret["retire_public_key"]):
            ctx.log(_("ovmweb's earlier SSH key removed from the server."))
    except (OperationFailed, ConnectionFailed) as exc:
        ctx.log(_("ovmweb's earlier SSH key could not be removed from the server: %(error)s") % {"error": exc})
    return {"private_key": secret["private_key"]}


def _pending(server: Server, token: str) -> dict | None:
    """The connection settings a discovery brought (encrypted in the job's params), put on
    ``server`` in memory only: the row keeps the old ones until the discovery succeeds."""
    from ovmweb.tunnels.credentials import decrypt_credentials, encrypt_credentials

    if not token:
        return None
    pending = decrypt_credentials(token)
    if server.host_key_fingerprint != pending["host_key_fingerprint"]:
        server.host_key = ""  # the pinned key follows the fingerprint
    server.ssh_user = pending["ssh_user"]
    server.host_key_fingerprint = pending["host_key_fingerprint"]
    server.credentials_encrypted = encrypt_credentials(pending["secret"])
    return pending


def _forget_pending(ctx: JobContext) -> None:
    """The credentials leave the job's params once the job is over, whatever its outcome."""
    from ovmweb.jobs.models import Job

    params = {k: v for k, v in ctx.job.params.items() if k != "pending"}
    Job.objects.filter(pk=ctx.job.pk).update(params=params)


def _read_facts(ctx: JobContext, server: Server, cpuinfo: str, meminfo: str):
    """What libvirt and /proc say of the server, KVM probed."""
    ctx.progress(40, _("Connecting to libvirt"))
    connections.forget(server)
    driver = connections.driver_for(server)
    facts = driver.host_facts()
    cpu = parse_cpuinfo(cpuinfo)
    ctx.progress(60, _("Probing KVM"))
    # A firmware that runs is not proof enough: here KVM runs the BIOS and then
    # hangs the kernel on CPUs without vmx/svm. Both the flags and a probe are required.
    kvm = (
        cpu.get("virt_flags")
        and not settings.OVMWEB_HYPERVISOR_URI
        and driver.probe_kvm(timeout=settings.OVMWEB_KVM_PROBE_TIMEOUT)
    )
    ctx.log(_("KVM usable: %(kvm)s") % {"kvm": _("yes") if kvm else _("no, guests run under TCG")})
    types = ["kvm", "qemu"] if kvm else [t for t in facts.domain_types if t != "kvm"] or ["qemu"]
    return dataclasses.replace(
        facts,
        cpu_vendor=cpu.get("vendor", facts.cpu_vendor),
        cpu_family=cpu.get("family"),
        cpu_model=cpu.get("model"),
        cpu_model_name=cpu.get("model_name", facts.cpu_model_name),
        cpu_cores=cpu.get("cores") or facts.cpu_cores,
        memory_mib=parse_meminfo(meminfo) or facts.memory_mib,
        domain_types=types,
    )


def _discover(ctx: JobContext, server: Server, pending: dict | None, added_keys: list) -> Server:
    from ovmweb.tunnels.credentials import decrypt_credentials, encrypt_credentials

    ctx.progress(10, _("Connecting"))
    host_key, connection = "", None
    if server.transport == Transport.SSH:
        # A job queued before credentials travelled in its params logs in with the stored ones.
        secret = pending["secret"] if pending else decrypt_credentials(server.credentials_encrypted)
        cpuinfo, meminfo, host_key, keep, leases = _ssh_probe(ctx, server, secret, added_keys)
        # libvirt logs in with what is to be kept (the key that replaced a password) and
        # pins the key just verified: on this in-memory server only, until the facts are stored.
        server.credentials_encrypted = encrypt_credentials(keep)
        server.host_key = host_key
        connection = {"ssh_user": server.ssh_user, "host_key_fingerprint": server.host_key_fingerprint, "secret": keep}
    else:
        cpuinfo, meminfo = Path("/proc/cpuinfo").read_text(), Path("/proc/meminfo").read_text()
        leases = local_disk_leases()
    ctx.log(
        _("Disk leases (libvirt lockd + virtlockd): %(on)s")
        % {"on": _("yes") if leases else _("no: HA cannot be enabled in its pool")}
    )
    facts = _read_facts(ctx, server, cpuinfo, meminfo)
    return server_services.server_record_facts(
        server=server, facts=facts, host_key=host_key, job=ctx.job, connection=connection, disk_leases=leases
    )


def _discovery_failed(ctx: JobContext, server: Server, added_keys: list, message: str) -> None:
    # A connection opened with settings that failed must not serve the next caller.
    connections.forget(server)
    if added_keys and server.last_seen_at is None:
        # A first discovery that fails forgets the server: the key it just added goes too.
        try:
            _remove_manager_key(server, added_keys[0])
            ctx.log(_("ovmweb's SSH key removed from the server again."))
        except (ConnectionFailed, OperationFailed) as cleanup_error:
            ctx.log(
                _("ovmweb's SSH key could not be removed from the server again: %(error)s") % {"error": cleanup_error}
            )
    server_services.server_discovery_failed(server=server, error=message, job=ctx.job)


@operation("server.discover")
def server_discover(ctx: JobContext, *, server_id: int, pending: str = "") -> dict:
    server = Server.objects.get(pk=server_id)
    added_keys: list = []
    try:
        server = _discover(ctx, server, _pending(server, pending), added_keys)
    except HostKeyMismatch as exc:
        message = _(
            "Host key verification failed for %(host)s: the server offered %(offered)s, expected %(expected)s."
        ) % {"host": server.hostname, "offered": exc.offered_fingerprint, "expected": server.host_key_fingerprint}
        _discovery_failed(ctx, server, added_keys, message)
        raise OperationFailed(message) from exc
    except (ConnectionFailed, OperationFailed) as exc:
        _discovery_failed(ctx, server, added_keys, str(exc))
        raise
    finally:
        _forget_pending(ctx)
    return {"server_id": server.pk, "domain_types": server.domain_types, "host_uuid": server.host_uuid}


@operation("server.delete")
def server_delete(ctx: JobContext, *, server_id: int) -> dict:
    """Forget a server. A key ovmweb installed there is removed first when the server
    answers; an unreachable server is forgotten anyway (that is often why it goes),
    and the job log says the key was left behind."""
    from ovmweb.tunnels import credentials, manager_keys

    server = Server.objects.get(pk=server_id)
    secret = credentials.decrypt_credentials(server.credentials_encrypted) if server.credentials_encrypted else {}
    left_behind = False
    if server.transport == Transport.SSH and secret.get("manager_key"):
        ctx.progress(20, _("Removing ovmweb's SSH key from the server"))
        try:
            _remove_manager_key(server, manager_keys.from_private_key(secret["private_key"]))
            ctx.log(_("ovmweb's SSH key removed from %(host)s.") % {"host": server.hostname})
        except (ConnectionFailed, OperationFailed) as exc:
            left_behind = True
            ctx.log(
                _("ovmweb's SSH key (%(comment)s) stays in ~/.ssh/authorized_keys on %(host)s: %(error)s")
                % {"comment": manager_keys.comment(), "host": server.hostname, "error": exc}
            )
    ctx.progress(80, _("Forgetting the server"))
    server_services.server_remove(server=server, user=ctx.job.user, job=ctx.job, key_left_behind=left_behind)
    return {"server_id": server_id}
