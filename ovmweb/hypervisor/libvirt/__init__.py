"""The libvirt driver: this package is the only part of ovmweb that imports libvirt.

Every libvirt error leaves it as a ``DriverError`` subclass. One process-wide event
loop thread (libvirt's default implementation) serves keepalive and domain events
for every connection, so it is registered before the first connection is opened.

``LibvirtDriver`` is composed of one mixin per capability, each in its own module
on top of ``connection.Connection``: ``host`` (facts, KVM probe), ``domains``
(definition, power, resources), ``devices`` (hot-plug), ``messages`` (guest agent),
``events`` (lifecycle events), ``storage`` (pools, volumes), ``backup`` (point-in-time
copies of a running domain's disks), ``stats`` (bulk domain, host and pool statistics)
and ``migration``.
"""

from __future__ import annotations

from ..base import Driver, StorageDriver
from .backup import BackupMixin
from .connection import KEEPALIVE_COUNT, KEEPALIVE_INTERVAL, ensure_event_loop
from .devices import DevicesMixin
from .domains import DomainsMixin
from .events import EventsMixin
from .host import HostMixin
from .messages import MessagesMixin
from .migration import MigrationMixin, migration_progress, migration_xml
from .stats import StatsMixin
from .storage import StorageMixin

__all__ = [
    "KEEPALIVE_COUNT",
    "KEEPALIVE_INTERVAL",
    "LibvirtDriver",
    "ensure_event_loop",
    "migration_progress",
    "migration_xml",
]


class LibvirtDriver(
    HostMixin,
    DomainsMixin,
    DevicesMixin,
    MessagesMixin,
    EventsMixin,
    StorageMixin,
    BackupMixin,
    StatsMixin,
    MigrationMixin,
    StorageDriver,
    Driver,
):
    """A connection to one libvirt daemon, e.g. ``qemu:///system``,
    ``qemu+ssh://root@host:22/system?command=<wrapper>...`` (see ``connections.server_uri``)
    or ``test:///default``."""
