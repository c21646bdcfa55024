"""Servers: discovery, updates, inbound migration lock, reachability.

Rules kept here (and only here):
- a server is trusted only under the host-key fingerprint given at discovery
  (never learned on first use); its credentials are stored encrypted and never
  returned;
- a server given a password is reached with a key of the manager's own,
  installed at discovery; the password is not kept (``server_store_credentials``);
- a forgotten server leaves nothing on this machine: no cached connection, no
  pooled SSH transport, no key or known_hosts file (``server_remove``);
- KVM counts as usable only when a probe domain really ran under it;
- an unreachable server has every VM on it STOPPED with an OFFLINE event.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict
from ovmweb.hypervisor.base import HostFacts
from ovmweb.jobs.choices import Severity
from ovmweb.jobs.live import publish
from ovmweb.jobs.models import Job
from ovmweb.jobs.services import event_record, job_submit

from ..choices import ServerStatus, Transport, VmStatus
from ..models import Server, ServerPool

_UPDATABLE = {"name", "server_pool", "compatibility_group", "status_message"}


def server_payload(server: Server) -> dict:
    return {"id": server.pk, "name": server.name, "status": server.status, "hostname": server.hostname}


def server_discover(
    *,
    user,
    hostname: str,
    transport: str,
    ssh_port: int = 22,
    ssh_user: str = "root",
    password: str | None = None,
    private_key: str | None = None,
    host_key_fingerprint: str = "",
    name: str | None = None,
    server_pool: ServerPool | None = None,
    rediscover: bool = False,
) -> Job:
    """Record a new server and queue ``server.discover``; with ``rediscover``, queue it for the
    known server at ``hostname:ssh_port`` instead.

    A discovery never rewrites a known server: without ``rediscover`` a known host:port is a
    Conflict. A rediscovery keeps the transport (a change is a Conflict: delete the server and
    discover it again), and its SSH user, host key fingerprint and credentials travel
    encrypted in the job's params: they replace the server's only when the job succeeds, and
    a failed rediscovery leaves the server reached as before. Renaming or moving a server to
    another pool is an edit (``server_update``), never a side effect of a rediscovery."""
    from ovmweb.tunnels.ssh import normalize_fingerprint

    if transport == Transport.SSH:
        if not host_key_fingerprint:
            raise ValidationError({"host_key_fingerprint": [_("The expected host key fingerprint is required.")]})
        if not password and not private_key:
            raise ValidationError({"password": [_("Give a password or a private key.")]})
        host_key_fingerprint = normalize_fingerprint(host_key_fingerprint)
    with transaction.atomic():
        server = Server.objects.select_for_update().filter(hostname=hostname, ssh_port=ssh_port).first()
        if server is None:
            default = hostname if ssh_port == 22 else f"{hostname}:{ssh_port}"
            server = Server(hostname=hostname, ssh_port=ssh_port, name=name or default, transport=transport)
            server.ssh_user = ssh_user
            server.host_key_fingerprint = host_key_fingerprint if transport == Transport.SSH else ""
            server.server_pool = server_pool
            server.status = ServerStatus.DISCOVERING
            server.full_clean()
            server.save()
            summary = _("Discover server %(name)s")
        else:
            _check_rediscovery(server, rediscover=rediscover, transport=transport, name=name, server_pool=server_pool)
            summary = _("Rediscover server %(name)s")
        params = {"server_id": server.pk}
        if transport == Transport.SSH:
            params["pending"] = _pending_connection(
                server=server,
                ssh_user=ssh_user,
                host_key_fingerprint=host_key_fingerprint,
                password=password,
                private_key=private_key,
            )
        return job_submit(
            operation="server.discover",
            summary=summary % {"name": server.name},
            user=user,
            target=server,
            params=params,
            lock=[server],
        )


def _check_rediscovery(server: Server, *, rediscover: bool, transport: str, name, server_pool) -> None:
    if not rediscover:
        raise Conflict(
            _(
                "%(host)s:%(port)s is already server %(name)s. Ask to rediscover it to read it again "
                "(and to give it new credentials)."
            )
            % {"host": server.hostname, "port": server.ssh_port, "name": server.name}
        )
    if transport != server.transport:
        raise Conflict(
            _(
                "Server %(name)s is reached over %(current)s; a rediscovery does not change that. "
                "Delete the server and discover it again."
            )
            % {"name": server.name, "current": server.get_transport_display()}
        )
    errors = {}
    if name and name != server.name:
        errors["name"] = [_("A rediscovery does not rename the server: edit the server instead.")]
    if server_pool is not None and server_pool.pk != server.server_pool_id:
        errors["server_pool"] = [_("A rediscovery does not move the server: edit the server instead.")]
    if errors:
        raise ValidationError(errors)


def _pending_connection(
    *, server: Server, ssh_user: str, host_key_fingerprint: str, password: str | None, private_key: str | None
) -> str:
    """How the job is to reach the server, encrypted: the server row gets it only on success."""
    from ovmweb.tunnels.credentials import encrypt_credentials

    return encrypt_credentials(
        {
            "ssh_user": ssh_user,
            "host_key_fingerprint": host_key_fingerprint,
            "secret": _discovery_secret(server=server, password=password, private_key=private_key),
        }
    )


def _discovery_secret(*, server: Server, password: str | None, private_key: str | None) -> dict:
    """What the ``server.discover`` job needs to log in, and to keep the manager's key tidy.

    A server that already holds a manager key and is rediscovered with a password
    gets that same key installed again (found in place: no second line). Given an
    administrator's key instead, the manager key is retired from the server."""
    from ovmweb.tunnels import manager_keys
    from ovmweb.tunnels.credentials import CredentialsUnreadable, decrypt_credentials

    try:
        previous = decrypt_credentials(server.credentials_encrypted) if server.pk else {}
    except CredentialsUnreadable:
        previous = {}
    manager_key = previous.get("private_key") if previous.get("manager_key") else previous.get("manager_private_key")
    if password:
        return {"password": password, "manager_private_key": manager_key} if manager_key else {"password": password}
    if manager_key:
        return {"private_key": private_key, "retire_public_key": manager_keys.from_private_key(manager_key).public_key}
    return {"private_key": private_key}


@transaction.atomic
def server_record_facts(
    *,
    server: Server,
    facts: HostFacts,
    host_key: str = "",
    job: Job | None = None,
    connection: dict | None = None,
    disk_leases: bool | None = None,
) -> Server:
    """Store what discovery read from the server and mark it RUNNING.

    ``connection`` (``ssh_user``, ``host_key_fingerprint``, ``secret``): how the discovery
    reached the server, stored with the facts in one transaction, so that the server's
    credentials change only with a discovery that succeeded. A password is never kept:
    ``secret`` is then the key ovmweb installed (``manager_key``) instead."""
    from ovmweb.tunnels.credentials import encrypt_credentials

    server = Server.objects.select_for_update().get(pk=server.pk)
    if connection is not None:
        server.ssh_user = connection["ssh_user"]
        server.host_key_fingerprint = connection["host_key_fingerprint"]
        server.credentials_encrypted = encrypt_credentials(connection["secret"])
    server.host_uuid = facts.host_uuid
    server.cpu_vendor = facts.cpu_vendor[:64]
    server.cpu_family = facts.cpu_family
    server.cpu_model = facts.cpu_model
    server.cpu_model_name = facts.cpu_model_name[:255]
    server.cpu_cores = facts.cpu_cores
    server.memory_mib = facts.memory_mib
    server.libvirt_version = facts.libvirt_version
    server.qemu_version = facts.qemu_version
    server.domain_types = list(facts.domain_types)
    if disk_leases is not None:
        server.disk_leases = disk_leases
    if host_key:
        server.host_key = host_key
    server.status = _answering_status(server)  # a rediscovery does not end maintenance
    server.status_message = ""
    server.last_seen_at = timezone.now()
    server.full_clean()
    server.save()
    event_record(
        obj=server,
        type="server.discovered",
        text=_(
            "Server %(name)s discovered: %(vendor)s %(model)s, %(cores)s cores, %(mem)s MiB, libvirt %(lv)s, QEMU %(qv)s, %(types)s."
        )
        % {
            "name": server.name,
            "vendor": server.cpu_vendor,
            "model": server.cpu_model_name,
            "cores": server.cpu_cores,
            "mem": server.memory_mib,
            "lv": server.libvirt_version,
            "qv": server.qemu_version,
            "types": "/".join(server.domain_types),
        },
        job=job,
    )
    publish("server", server_payload(server))
    return server


@transaction.atomic
def server_discovery_failed(*, server: Server, error: str, job: Job | None = None) -> None:
    """A server that was never discovered leaves nothing behind. A failed rediscovery of a
    known one changes nothing of it: it is still reached with the settings it had (the new
    ones may be what failed; the monitor says whether it answers); an event says so."""
    server = Server.objects.select_for_update().filter(pk=server.pk).first()
    if server is None:
        return
    if server.last_seen_at is None and not server.vms.exists() and not server.local_repositories.exists():
        event_record(
            obj=None,
            type="server.discovery_failed",
            text=_("Discovery of %(host)s failed: %(error)s") % {"host": server.hostname, "error": error},
            severity=Severity.ERROR,
            job=job,
        )
        server_remove(server=server)
        return
    event_record(
        obj=server,
        type="server.rediscovery_failed",
        text=_("Rediscovery of %(name)s failed (it is still reached with its earlier settings): %(error)s")
        % {"name": server.name, "error": error},
        severity=Severity.ERROR,
        job=job,
    )


def _ensure_removable(server: Server) -> None:
    active = server.vms.exclude(status__in=[VmStatus.STOPPED, VmStatus.TEMPLATE]).values_list("name", flat=True)
    if active:
        raise Conflict(
            _("Server %(name)s still runs virtual machines (%(vms)s): stop or migrate them first.")
            % {"name": server.name, "vms": ", ".join(sorted(active)[:10])}
        )
    if server.local_repositories.exists():
        raise Conflict(_("Server %(name)s still owns local repositories: delete them first.") % {"name": server.name})


def server_delete(*, server: Server, user) -> Job:
    """Queue ``server.delete``: forget the server (its manager key leaves the server too, if reachable)."""
    with transaction.atomic():
        server = Server.objects.select_for_update().get(pk=server.pk)
        _ensure_removable(server)
        return job_submit(
            operation="server.delete",
            summary=_("Delete server %(name)s") % {"name": server.name},
            user=user,
            target=server,
            params={"server_id": server.pk},
            lock=[server],
        )


@transaction.atomic
def server_remove(*, server: Server, user=None, job: Job | None = None, key_left_behind: bool = False) -> None:
    """Delete the server's row and, once that is committed, every trace of it on this machine.

    ``key_left_behind``: ovmweb's key could not be removed from the unreachable
    server; the event says so, at WARNING, for its administrator to remove by hand."""
    from ovmweb.hypervisor import connections
    from ovmweb.tunnels import pool

    server = Server.objects.select_for_update().get(pk=server.pk)
    if server.last_seen_at is not None:  # a failed first discovery recorded its own event
        _ensure_removable(server)
        text = _("Server %(name)s (%(host)s) deleted.") % {"name": server.name, "host": server.hostname}
        if key_left_behind:
            from ovmweb.tunnels.manager_keys import comment

            text += " " + _(
                "ovmweb's SSH key (%(comment)s) is still in ~/.ssh/authorized_keys of %(user)s there: "
                "remove it by hand."
            ) % {"comment": comment(), "user": server.ssh_user}
        event_record(
            obj=None,
            type="server.deleted",
            text=text,
            user=user,
            job=job,
            severity=Severity.WARNING if key_left_behind else Severity.INFO,
        )
    server_id = server.pk
    server.delete()

    def cleanup() -> None:
        from ovmweb.tunnels import aiossh, openssh

        pool.close_server(server_id)
        aiossh.close_server(server_id)
        openssh.close_server(server_id)
        connections.purge(server_id)

    transaction.on_commit(cleanup)
    publish("server", {"id": server_id, "deleted": True})


@transaction.atomic
def server_update(*, server: Server, user, **changes) -> Server:
    unknown = sorted(set(changes) - _UPDATABLE)
    if unknown:
        raise ValidationError({name: _("This field cannot be changed here.") for name in unknown})
    server = Server.objects.select_for_update().get(pk=server.pk)
    for field, value in changes.items():
        setattr(server, field, value)
    server.full_clean()
    server.save()
    event_record(
        obj=server, type="server.updated", text=_("Server %(name)s updated.") % {"name": server.name}, user=user
    )
    publish("server", server_payload(server))
    return server


@transaction.atomic
def server_set_inbound_lock(*, server: Server, user, locked: bool) -> Server:
    """Seed 7.12: nothing is started or migrated onto a locked server (except HA failover)."""
    server = Server.objects.select_for_update().get(pk=server.pk)
    server.inbound_migration_lock = locked
    server.save(update_fields=["inbound_migration_lock", "updated_at"])
    text = _("Inbound migration lock on %(name)s set.") if locked else _("Inbound migration lock on %(name)s cleared.")
    event_record(obj=server, type="server.inbound_lock", text=text % {"name": server.name}, user=user)
    publish("server", server_payload(server))
    return server


def server_mark_unreachable(*, server: Server, error: str) -> Server:
    """The server cannot be reached: its VMs are STOPPED with OFFLINE events (seed 7.8)."""
    from .vm_state import vm_set_status

    with transaction.atomic():
        server = Server.objects.select_for_update().get(pk=server.pk)
        changed = server.status != ServerStatus.UNREACHABLE
        server.status = ServerStatus.UNREACHABLE
        server.status_message = error[:2000]
        server.save(update_fields=["status", "status_message", "updated_at"])
        if changed:
            event_record(
                obj=server,
                type="server.unreachable",
                text=_("Server %(name)s is unreachable: %(error)s") % {"name": server.name, "error": error},
                severity=Severity.CRITICAL,
            )
            publish("server", server_payload(server))
    for vm in server.vms.exclude(status__in=[VmStatus.STOPPED, VmStatus.TEMPLATE]):
        vm_set_status(
            vm=vm,
            status=VmStatus.STOPPED,
            event_type="vm.offline",
            severity=Severity.WARNING,
            reason=_("%(vm)s is OFFLINE: its server %(server)s cannot be reached.")
            % {"vm": vm.name, "server": server.name},
        )
        # The console ports stay with the VM: its guest may well still run (and hold
        # them) over there; the monitor releases them once the server says it stopped.
    return server


def _answering_status(server: Server) -> str:
    from .maintenance import maintenance_or_running  # maintenance imports this module

    return maintenance_or_running(server)


def server_mark_reachable(*, server: Server) -> Server:
    with transaction.atomic():
        server = Server.objects.select_for_update().get(pk=server.pk)
        previous = server.status
        server.last_seen_at = timezone.now()
        fields = ["last_seen_at"]
        if previous == ServerStatus.UNREACHABLE:
            server.status = _answering_status(server)
            server.status_message = ""
            fields += ["status", "status_message", "updated_at"]
            event_record(
                obj=server,
                type="server.reachable",
                text=_("Server %(name)s is reachable again.") % {"name": server.name},
            )
            publish("server", server_payload(server))
        server.save(update_fields=fields)
    return server


def vm_release_offline_ports(*, vm) -> bool:
    """Free the console ports an OFFLINE VM kept, once its server says the guest is not running.

    Conditional on the VM still being STOPPED at that instant, so a start that has
    just begun (STARTING, with freshly allocated ports) is never robbed of them."""
    from ..models import VirtualMachine

    done = VirtualMachine.objects.filter(pk=vm.pk, status=VmStatus.STOPPED, vnc_port__isnull=False).update(
        vnc_port=None, serial_port=None
    )
    if done:
        vm.vnc_port = vm.serial_port = None
    return bool(done)


def server_scan_host_key(*, hostname: str, port: int = 22, timeout: float = 10) -> dict:
    """The host key ``hostname:port`` offers, for the administrator to compare with the
    server's own fingerprint before discovery (as ssh asks on a first connection).

    Only the key exchange runs: no authentication, nothing trusted or stored. The
    result is shown, never used to pin: discovery still needs the fingerprint typed
    or confirmed by the administrator."""
    import socket

    import paramiko

    from ovmweb.tunnels.ssh import host_key_fingerprint

    try:
        sock = socket.create_connection((hostname, int(port)), timeout=timeout)
    except (OSError, ValueError) as exc:
        raise ValidationError(
            {"hostname": [_("Cannot reach %(h)s:%(p)s: %(e)s") % {"h": hostname, "p": port, "e": exc}]}
        ) from exc
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise ValidationError(
            {
                "hostname": [
                    _("%(h)s:%(p)s did not complete an SSH key exchange: %(e)s") % {"h": hostname, "p": port, "e": exc}
                ]
            }
        ) from exc
    finally:
        transport.close()
        sock.close()
    return {"key_type": key.get_name(), "fingerprint": host_key_fingerprint(key)}
