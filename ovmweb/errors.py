"""The errors every layer shares, at the bottom of the import graph.

Transport and driver failures (``DriverError`` and its kinds) are raised by
``ovmweb/tunnels/`` and ``ovmweb/hypervisor/``; ``Conflict`` (HTTP 409) and
``LockConflict`` by the job layer and the services above it. Defining them here,
below every package, lets each layer raise them without importing a layer above it.
"""

from __future__ import annotations


class DriverError(Exception):
    """Any failure of the hypervisor layer."""


class ConnectionFailed(DriverError):
    """The server could not be reached (network, SSH, libvirtd down)."""


class HostKeyMismatch(ConnectionFailed):
    """The server offered a host key other than the pinned one."""

    def __init__(self, message: str, *, offered_fingerprint: str):
        super().__init__(message)
        self.offered_fingerprint = offered_fingerprint


class DomainNotFound(DriverError):
    pass


class OperationFailed(DriverError):
    pass


class Conflict(Exception):
    """The request conflicts with the current state of an object (HTTP 409)."""


class LockConflict(Conflict):
    """Another job holds a lock on an object this job must change."""
