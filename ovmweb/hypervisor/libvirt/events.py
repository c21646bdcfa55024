"""Domain lifecycle events pushed by libvirt, delivered as ``DomainEvent`` on the event-loop thread."""

from __future__ import annotations

import logging
from collections.abc import Callable

import libvirt

from ..base import DomainEvent, PowerState
from .connection import Connection, errors

log = logging.getLogger(__name__)

_EVENT = {
    libvirt.VIR_DOMAIN_EVENT_STARTED: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: PowerState.PAUSED,
    libvirt.VIR_DOMAIN_EVENT_RESUMED: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_EVENT_STOPPED: PowerState.SHUTOFF,
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: PowerState.SHUTTING_DOWN,
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: PowerState.ABSENT,
    libvirt.VIR_DOMAIN_EVENT_CRASHED: PowerState.CRASHED,
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: PowerState.PAUSED,
}
_STOPPED_REASONS = {
    libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED: "destroyed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED: "migrated",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED: "saved",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED: "failed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT: "snapshot",
}


def lifecycle_event(uuid: str, event: int, detail: int) -> DomainEvent | None:
    """The ``DomainEvent`` of a libvirt lifecycle event, None for one ovmweb does not follow."""
    state = _EVENT.get(event)
    if state is None:
        return None
    reason = ""
    if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
        reason = _STOPPED_REASONS.get(detail, "")
        if detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED:
            state = PowerState.SAVED
    return DomainEvent(uuid=uuid, state=state, reason=reason)


class EventsMixin(Connection):
    def subscribe_events(
        self, callback: Callable[[DomainEvent], None], on_close: Callable[[], None] | None = None
    ) -> object:
        def lifecycle(_conn, dom, event, detail, _opaque) -> None:
            try:
                found = lifecycle_event(dom.UUIDString(), event, detail)
                if found is not None:
                    callback(found)
            except Exception:
                log.exception("domain event handler failed")

        with errors("subscribing to domain events"):
            handle = self._conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lifecycle, None)
        if on_close is not None:
            try:
                self._conn.registerCloseCallback(lambda *_a: on_close(), None)
            except libvirt.libvirtError:
                pass  # not every driver reports closes; the reconcile loop notices anyway
        return handle

    def unsubscribe_events(self, handle: object) -> None:
        try:
            self._conn.domainEventDeregisterAny(handle)
        except libvirt.libvirtError:
            pass
