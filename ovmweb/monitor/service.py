"""The monitor: true VM states from the servers (seed 7.8).

Libvirt lifecycle events arrive on libvirt's event thread and are handed to
the monitor thread through a queue (so the event loop never waits on the
database). The same thread reconciles every server periodically, which also
notices unreachable servers: after ``OVMWEB_SERVER_OFFLINE_AFTER`` seconds
without an answer the server is UNREACHABLE and its VMs STOPPED (OFFLINE
events); when it answers again its VMs' states are re-read.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from django.conf import settings
from django.db import close_old_connections

from ovmweb.errors import DriverError
from ovmweb.hypervisor.base import DomainEvent, PowerState

from .ha import HaFailover
from .policies import PoolPolicies

log = logging.getLogger(__name__)

# A job owns the VM while it is in one of these states; only its outcome, not a
# passing reconcile, decides where the VM goes next.
_IN_FLIGHT = {"STARTING", "STOPPING"}
_OFF = {PowerState.SHUTOFF, PowerState.ABSENT, PowerState.CRASHED}


def _migrating(vm) -> bool:
    """A live migration job owns the VM: its domain pauses, leaves the source and appears
    on the target, and the job records where it ends up (it stays RUNNING throughout)."""
    from django.contrib.contenttypes.models import ContentType

    from ovmweb.jobs.choices import JobStatus
    from ovmweb.jobs.models import Job

    return Job.objects.filter(
        operation="vm.migrate",
        status=JobStatus.RUNNING,
        target_id=vm.pk,
        target_type=ContentType.objects.get_for_model(vm),
    ).exists()


class Monitor:
    def __init__(self, *, interval: float | None = None, offline_after: float | None = None):
        self.interval = interval if interval is not None else settings.OVMWEB_RECONCILE_INTERVAL
        self.offline_after = offline_after if offline_after is not None else settings.OVMWEB_SERVER_OFFLINE_AFTER
        self._events: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._subscriptions: dict[int, tuple[object, object]] = {}  # server id -> (driver, handle)
        self._failing_since: dict[int, float] = {}
        self.ha = HaFailover()
        self.policies = PoolPolicies()

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        if self._thread and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ovmweb-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._events.put(None)
        if self._thread:
            self._thread.join(10)
        for driver, handle in self._subscriptions.values():
            try:
                driver.unsubscribe_events(handle)
            except DriverError:
                pass
        self._subscriptions.clear()

    def _run(self) -> None:
        next_reconcile = 0.0
        self._ha_recover()
        while not self._stop.is_set():
            timeout = max(0.0, next_reconcile - time.monotonic())
            if self.ha.busy:  # an HA restart under way is watched every second
                timeout = min(timeout, 1.0)
            try:
                item = self._events.get(timeout=timeout)
            except queue.Empty:
                item = "reconcile" if time.monotonic() >= next_reconcile else "ha"
            if self._stop.is_set():
                break
            close_old_connections()
            try:
                if item == "reconcile":
                    self.reconcile_all()
                    next_reconcile = time.monotonic() + self.interval
                elif isinstance(item, tuple) and item[0] == "closed":
                    self.reconcile_server_id(item[1])
                elif item is not None and item != "ha":
                    self.handle_event(*item)
                self.ha.step(failing=frozenset(self._failing_since))
            except Exception:  # the monitor must outlive any one failure
                log.exception("monitor step failed")
            finally:
                close_old_connections()

    def _ha_recover(self) -> None:
        try:
            self.ha.recover()
        except Exception:
            log.exception("HA recovery failed")
        finally:
            close_old_connections()

    # ---------------------------------------------------------------- events
    def _subscribe(self, server, driver) -> None:
        current = self._subscriptions.get(server.pk)
        if current and current[0] is driver:
            return
        server_id = server.pk
        handle = driver.subscribe_events(
            lambda event: self._events.put((server_id, event)),
            on_close=lambda: self._events.put(("closed", server_id)),
        )
        self._subscriptions[server_id] = (driver, handle)

    def handle_event(self, server_id: int, event: DomainEvent) -> None:
        from ovmweb.inventory.models import VirtualMachine
        from ovmweb.inventory.services.vm_state import vm_reconcile

        if event.state in (PowerState.ABSENT, PowerState.SHUTTING_DOWN):
            return  # undefine during a (re)start, or a shutdown in progress: the next event says more
        vm = VirtualMachine.objects.filter(uuid=event.uuid, server_id=server_id).first()
        if vm is None:
            return
        if vm.status == "STARTING" or _migrating(vm):
            return  # the start (or migrate) job decides (and tells a kill apart from a start)
        reason = ""
        if event.state == PowerState.SHUTOFF and event.reason == "shutdown":
            reason = f"{vm.name} powered off."
        vm_reconcile(vm=vm, power_state=event.state.value, reason=reason)

    # ---------------------------------------------------------------- reconcile
    def reconcile_server_id(self, server_id: int) -> None:
        from ovmweb.inventory.models import Server

        server = Server.objects.filter(pk=server_id).first()
        if server is not None:
            self.reconcile_server(server)

    def reconcile_all(self) -> None:
        from ovmweb.inventory.models import Server
        from ovmweb.metrics.sampler import sample_round

        servers = list(Server.objects.exclude(status="DISCOVERING"))
        for server in servers:
            self.reconcile_server(server)
        # Metrics of the servers that answered this round (when their interval is due).
        sample_round(servers=[s for s in servers if s.pk not in self._failing_since])
        # DRS / DPM of the pools that enable them (ovmweb/monitor/policies.py).
        self.policies.step(s for s in servers if s.pk not in self._failing_since)

    def reconcile_server(self, server) -> None:
        from ovmweb.hypervisor.connections import driver_for, forget
        from ovmweb.inventory.services.servers import (
            server_mark_reachable,
            server_mark_unreachable,
            vm_release_offline_ports,
        )
        from ovmweb.inventory.services.vm_state import vm_reconcile

        try:
            driver = driver_for(server)
            domains = {d.uuid: d for d in driver.list_domains()}
            self._subscribe(server, driver)
        except DriverError as exc:
            self._subscriptions.pop(server.pk, None)
            forget(server)
            since = self._failing_since.setdefault(server.pk, time.monotonic())
            failing_for = time.monotonic() - since
            self.ha.server_failing(server, failing_for=failing_for, offline_after=self.offline_after)
            if failing_for >= self.offline_after:
                server_mark_unreachable(server=server, error=str(exc))
            return
        self._failing_since.pop(server.pk, None)
        server_mark_reachable(server=server)
        self.ha.server_back(server, domains)
        for vm in server.vms.exclude(status="TEMPLATE"):
            if vm.status in _IN_FLIGHT or _migrating(vm):
                continue
            info = domains.get(str(vm.uuid))
            state = info.state if info else PowerState.ABSENT
            vm_reconcile(vm=vm, power_state=state.value)
            if vm.vnc_port is not None and vm.status == "STOPPED" and state in _OFF:
                # Kept while its server was unreachable; now known to be free.
                vm_release_offline_ports(vm=vm)
