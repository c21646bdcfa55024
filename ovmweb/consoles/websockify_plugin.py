"""Standalone console proxy: a websockify token plugin that accepts ovmweb's console tickets.

    websockify --token-plugin ovmweb.consoles.websockify_plugin.TicketTokenPlugin \\
               --token-source ovmweb.settings.production 6080

Browsers then open ``ws://<proxy>:6080/?token=<ticket>`` with a ticket from
``POST /api/v1/vms/{id}/console-tickets/``; the ticket is redeemed exactly as
by the web process (single use, 60 s, the ticket's user must still have
access). The target is 127.0.0.1:<port> for a local server. For a server
reached over SSH, QEMU's console ports listen only on that server's loopback,
so the plugin opens a one-connection forward on this machine's loopback
carried by ovmweb's shared, host-key-pinned SSH transport to the server, and
returns that. websockify cannot drop a viewer's input, so read-only tickets
are refused here.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)


class TicketRefused(Exception):
    """Raised instead of returning None so websockify never logs the ticket itself."""


class TicketTokenPlugin:
    def __init__(self, src: str | None = None):
        if src:
            os.environ["DJANGO_SETTINGS_MODULE"] = src
        else:
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ovmweb.settings.base")
        import django

        django.setup()

    def lookup(self, token: str) -> tuple[str, int]:
        from django.db import close_old_connections

        from ovmweb.consoles import services
        from ovmweb.errors import ConnectionFailed
        from ovmweb.tunnels import pool

        close_old_connections()
        try:
            ticket = services.ticket_redeem_for_proxy(token=token)
        except Exception as exc:  # any refusal: say why without the token
            logger.info("console ticket refused by the standalone proxy: %s", type(exc).__name__)
            raise TicketRefused("console ticket refused") from None
        server, port = services.console_target(ticket)
        if services.is_local(server):
            return "127.0.0.1", port
        try:
            return "127.0.0.1", pool.forward_once(server, port)
        except ConnectionFailed as exc:
            raise TicketRefused(f"console of VM {ticket.vm_id} unreachable: {exc}") from None
