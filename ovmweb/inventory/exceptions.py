"""Domain exceptions of the service layer. They become HTTP answers only at the edges."""

from __future__ import annotations

from ovmweb.errors import Conflict


class InvalidTransition(Conflict):
    """A VM action that its current state forbids (seed 7.8)."""

    def __init__(self, *, vm_name: str, action: str, status: str, allowed: list[str] | None = None):
        self.vm_name, self.action, self.status, self.allowed = vm_name, action, status, allowed or []
        need = f" (allowed from: {', '.join(self.allowed)})" if self.allowed else ""
        super().__init__(f"Cannot {action} virtual machine '{vm_name}' while it is {status}{need}.")


class ServerUnreachable(Conflict):
    """The server hosting the VM cannot be reached."""
