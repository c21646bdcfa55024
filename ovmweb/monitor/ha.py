"""HA failover, run by the monitor thread (seed 7.8, 7.12, 7.15).

A VM with HA enabled whose server is lost is restarted on another running server of its
pool that sees its repository. Lost means one of:

- the server's libvirtd does not answer and its QEMU process for the VM is gone, asked
  over SSH without libvirt (``leases.running_guests``): known at once;
- the server has not answered for ``OVMWEB_SERVER_OFFLINE_AFTER`` seconds: the monitor
  marks it UNREACHABLE and its VMs STOPPED (OFFLINE), and HA tries the restart. The guest
  may still run over there: its disk lease (libvirt's lockd) then refuses the start, the
  event names the held disk, and the restart is tried again every ``OVMWEB_HA_RETRY``
  seconds until the lease frees. A refusal is never worked around.

The restart is an ordinary ``vm.start`` job with ``ha_failover``: placement keeps
anti-affinity, memory and the repository, and lets HA override the inbound migration
lock (7.12) and the HugePages rule (7.15). Only VMs that were RUNNING when their server
was lost are restarted: KILL clears the HA flag (services/vms.py), a VM the user stops is
STOPPING or STOPPED by then, and a guest that shuts itself down is STOPPED by its event
while its server still answers.

When a lost server answers again, the guests it still runs are reconciled by UUID
(``server_back``): a STOPPED VM found running there is recorded there (HA stops trying),
and a VM recorded RUNNING elsewhere is never believed to run twice: a CRITICAL event says
so and nothing is started or stopped.

Invariants: one restart job per VM at a time; at most one event per VM for a repeated
refusal with the same reason; the state kept here is only a cache of "which VMs are being
failed over" (``recover`` rebuilds it from the database at start)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict, LockConflict
from ovmweb.hypervisor.base import PowerState

log = logging.getLogger(__name__)

_ALIVE = {PowerState.RUNNING, PowerState.PAUSED}


@dataclass
class _Lost:
    vm_id: int
    failed_server_id: int | None
    failed_server: str
    lost_at: float
    job_id: int | None = None
    target: str = ""
    next_try: float = 0.0
    reported: str = ""


def _retry_interval() -> float:
    return float(getattr(settings, "OVMWEB_HA_RETRY", 5))


def _event(vm, type_: str, text: str, severity: str = "INFO") -> None:
    from ovmweb.jobs.services import event_record

    event_record(obj=vm, type=type_, text=text, severity=severity)


class HaFailover:
    def __init__(self) -> None:
        self.lost: dict[int, _Lost] = {}
        self._doubles: set[tuple[int, int]] = set()  # (vm id, server id) already reported

    @property
    def busy(self) -> bool:
        return bool(self.lost)

    # ------------------------------------------------------------ losing a server
    def recover(self) -> None:
        """After a restart of the monitor: HA VMs left OFFLINE on an unreachable server."""
        from ovmweb.inventory.models import VirtualMachine
        from ovmweb.jobs.models import Event

        for vm in VirtualMachine.objects.filter(ha_enabled=True, status="STOPPED", server__status="UNREACHABLE"):
            last = Event.objects.filter(object_id=vm.pk, type__startswith="vm.").order_by("-id").first()
            if last is not None and last.type in ("vm.offline", "vm.ha"):
                self._remember(vm, vm.server)

    def _remember(self, vm, server) -> None:
        if vm.pk not in self.lost:
            self.lost[vm.pk] = _Lost(
                vm_id=vm.pk,
                failed_server_id=server.pk if server else None,
                failed_server=server.name if server else "-",
                lost_at=time.monotonic(),
            )

    def server_failing(self, server, *, failing_for: float, offline_after: float) -> None:
        """The monitor cannot reach ``server``'s libvirtd (called on every failed reconcile)."""
        from ovmweb.inventory.services.leases import running_guests

        running = list(server.vms.filter(ha_enabled=True, status="RUNNING"))
        if not running:
            return
        if failing_for >= offline_after:
            # The monitor marks them STOPPED (OFFLINE) right after this.
            for vm in running:
                self._remember(vm, server)
            return
        alive = running_guests(server=server)
        if alive is None:
            return  # the server itself does not answer: wait for OVMWEB_SERVER_OFFLINE_AFTER
        for vm in running:
            if str(vm.uuid).lower() not in alive:
                self._guest_gone(vm, server)

    def _guest_gone(self, vm, server) -> None:
        from ovmweb.inventory.services.vm_state import vm_set_status

        done = vm_set_status(
            vm=vm,
            status="STOPPED",
            only_from={"RUNNING"},
            event_type="vm.offline",
            severity="WARNING",
            reason=_("%(vm)s is OFFLINE: libvirtd and its QEMU process on %(server)s are gone.")
            % {"vm": vm.name, "server": server.name},
            vnc_port=None,
            serial_port=None,
        )
        if done is not None:
            self._remember(vm, server)

    # ------------------------------------------------------------ restarting
    def step(self, *, failing: set[int] | frozenset[int] = frozenset()) -> None:
        """Advance every failover: watch its start job, retry, or start one."""
        for lost in list(self.lost.values()):
            try:
                self._advance(lost, failing)
            except Exception:  # one VM's failover must not stop the others'
                log.exception("HA failover of VM %s failed", lost.vm_id)
                lost.next_try = time.monotonic() + _retry_interval()

    def _advance(self, lost: _Lost, failing) -> None:
        from ovmweb.inventory.models import VirtualMachine
        from ovmweb.jobs.models import Job

        vm = VirtualMachine.objects.select_related("server", "server_pool").filter(pk=lost.vm_id).first()
        job = Job.objects.filter(pk=lost.job_id).first() if lost.job_id else None
        if job is not None and job.status in ("QUEUED", "RUNNING"):
            return
        if job is not None:
            lost.job_id = None
            if self._job_ended(lost, vm, job):
                return
        if vm is None or not vm.ha_enabled or vm.status != "STOPPED":
            self.lost.pop(lost.vm_id, None)  # started, killed, adopted or deleted meanwhile
            return
        if time.monotonic() >= lost.next_try:
            self._restart(lost, vm, failing)

    def _job_ended(self, lost: _Lost, vm, job) -> bool:
        """True when the failover is over (the VM runs on the new server)."""
        from ovmweb.inventory.services.leases import is_lease_refusal, lease_refusal_text

        if job.status == "SUCCESS" and vm is not None and vm.status == "RUNNING":
            _event(
                vm,
                "vm.ha_restarted",
                _("HA restarted %(vm)s on %(new)s: its server %(old)s was lost (%(s).1f s).")
                % {
                    "vm": vm.name,
                    "new": vm.server.name if vm.server else lost.target,
                    "old": lost.failed_server,
                    "s": time.monotonic() - lost.lost_at,
                },
                "WARNING",
            )
            self.lost.pop(lost.vm_id, None)
            return True
        error = job.error or ""
        if vm is not None and is_lease_refusal(error):
            why = lease_refusal_text(vm=vm, error=error) or error
            self._report(lost, vm, _("still in use: %(why)s") % {"why": why})
        elif vm is not None:
            self._report(lost, vm, error)
        lost.next_try = time.monotonic() + _retry_interval()
        return False

    def _report(self, lost: _Lost, vm, why: str) -> None:
        # One event per distinct reason: a lease held for an hour is not 700 events.
        key = why.split("(", 1)[0]
        if key == lost.reported:
            return
        lost.reported = key
        _event(
            vm,
            "vm.ha",
            _("HA cannot restart %(vm)s yet (its server %(old)s was lost); retrying every %(n)d s: %(why)s")
            % {"vm": vm.name, "old": lost.failed_server, "n": _retry_interval(), "why": why},
            "ERROR",
        )

    def _restart(self, lost: _Lost, vm, failing) -> None:
        from ovmweb.inventory.services import placement, pools
        from ovmweb.inventory.services.vms import vm_action

        lost.next_try = time.monotonic() + _retry_interval()
        if self._still_runs_on_failed(lost, vm, failing):
            return
        refusal = pools.ha_refusal(vm.server_pool)
        if refusal:
            self._report(lost, vm, refusal)
            return
        # Servers the monitor cannot reach right now (the lost one first of all); placement
        # refuses UNREACHABLE and MAINTENANCE servers itself.
        exclude = [s for s in vm.server_pool.servers.all() if s.pk in failing]
        try:
            target = placement.choose_server(vm=vm, exclude=exclude, ha_failover=True)
            job = vm_action(vm=vm, action="start", user=None, server_id=target.pk, ha_failover=True)
        except (Conflict, LockConflict) as exc:
            self._report(lost, vm, str(exc))
            return
        lost.job_id, lost.target = job.pk, target.name
        _event(
            vm,
            "vm.ha",
            _("HA restarting %(vm)s on %(new)s: its server %(old)s was lost.")
            % {"vm": vm.name, "new": target.name, "old": lost.failed_server},
            "WARNING",
        )

    def _still_runs_on_failed(self, lost: _Lost, vm, failing) -> bool:
        """The lost server answers again and still runs the guest: it is recorded there
        (never a second start), whatever the order of this retry and the next reconcile."""
        from ovmweb.errors import DriverError
        from ovmweb.hypervisor.connections import driver_for
        from ovmweb.inventory.models import Server

        if lost.failed_server_id is None or lost.failed_server_id in failing:
            return False
        server = Server.objects.filter(pk=lost.failed_server_id, status="RUNNING").first()
        if server is None:
            return False
        try:
            domains = {d.uuid: d for d in driver_for(server).list_domains()}
        except DriverError:
            return False
        info = domains.get(str(vm.uuid))
        if info is None or info.state not in _ALIVE:
            return False
        self._adopt(vm, server)
        return True

    # ------------------------------------------------------------ a server back
    def server_back(self, server, domains: dict) -> None:
        """``server`` answered with ``domains`` (uuid -> DomainInfo): guests running there
        that the inventory records elsewhere are reconciled by UUID."""
        from ovmweb.inventory.models import VirtualMachine

        alive = [uuid for uuid, info in domains.items() if info.state in _ALIVE]
        if not alive:
            return
        for vm in VirtualMachine.objects.filter(uuid__in=alive).exclude(server=server).exclude(status="TEMPLATE"):
            if vm.status == "STOPPED" and not _has_live_job(vm):
                self._adopt(vm, server)
            elif vm.status in ("RUNNING", "SUSPENDED") and not _has_live_job(vm):
                self._double(vm, server)

    def _adopt(self, vm, server) -> None:
        from ovmweb.hypervisor.connections import driver_for
        from ovmweb.inventory.services.vm_state import vm_set_status

        vnc, serial = _console_ports(driver_for(server), str(vm.uuid))
        taken = server.vms.exclude(pk=vm.pk).filter(vnc_port__in=[p for p in (vnc,) if p]).exists()
        ports = {} if taken else {"vnc_port": vnc, "serial_port": serial}
        vm_set_status(
            vm=vm,
            status="RUNNING",
            only_from={"STOPPED"},
            event_type="vm.ha",
            severity="WARNING",
            server=server,
            reason=_("%(vm)s still runs on %(server)s (found by its UUID): recorded there, not started again.")
            % {"vm": vm.name, "server": server.name},
            **ports,
        )
        self.lost.pop(vm.pk, None)

    def _double(self, vm, server) -> None:
        if (vm.pk, server.pk) in self._doubles:
            return
        self._doubles.add((vm.pk, server.pk))
        _event(
            vm,
            "vm.ha_double",
            _(
                "%(vm)s also runs on %(server)s, while it is recorded on %(recorded)s: one of them must be "
                "stopped by hand (ovmweb never records one VM on two servers)."
            )
            % {"vm": vm.name, "server": server.name, "recorded": vm.server.name if vm.server else "-"},
            "CRITICAL",
        )


def _has_live_job(vm) -> bool:
    """A start or migrate job owns the VM: its outcome, not a reconcile, says where it runs."""
    from django.contrib.contenttypes.models import ContentType

    from ovmweb.jobs.models import Job

    return Job.objects.filter(
        target_type=ContentType.objects.get_for_model(vm),
        target_id=vm.pk,
        status__in=["QUEUED", "RUNNING"],
        operation__in=["vm.start", "vm.migrate", "vm.restart"],
    ).exists()


def _console_ports(driver, uuid: str) -> tuple[int | None, int | None]:
    """The VNC and serial ports of a running domain, from its live definition."""
    import re

    try:
        xml = driver.domain_xml(uuid)
    except Exception:  # the ports are a nicety: adopt the guest without them
        return None, None
    vnc = re.search(r"<graphics type=['\"]vnc['\"] port=['\"](\d+)['\"]", xml)
    serial = re.search(r"<serial type=['\"]tcp['\"]>\s*<source [^>]*service=['\"](\d+)", xml)
    return (int(vnc.group(1)) if vnc else None, int(serial.group(1)) if serial else None)


__all__ = ["HaFailover"]
