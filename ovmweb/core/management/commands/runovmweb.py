"""`manage.py runovmweb --bind 127.0.0.1:8000`: daphne serving ovmweb, with the
embedded services (job worker, monitor) running inside the same process."""

from __future__ import annotations

import asyncio
import logging
import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils.module_loading import import_string

logger = logging.getLogger("ovmweb.runovmweb")

# Seconds an opening WebSocket may take (see Server below).
HANDSHAKE_TIMEOUT = 20


def parse_bind(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise CommandError(f"--bind must be host:port, not {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class Command(BaseCommand):
    help = "Serve ovmweb with daphne and run the embedded services (job worker, monitor) in the same process."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default=os.environ.get("OVMWEB_BIND", "127.0.0.1:8000"), help="host:port")
        parser.add_argument(
            "--no-services", action="store_true", help="Serve HTTP/WebSocket only (workers run elsewhere)."
        )

    def handle(self, *args, bind: str, no_services: bool, **options):
        # daphne.server installs Twisted's asyncio reactor; it must be imported
        # before anything else imports twisted.internet.reactor.
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server

        from ovmweb.jobs import live

        host, port = parse_bind(bind)
        paths = [] if no_services else list(getattr(settings, "OVMWEB_EMBEDDED_SERVICES", []))
        if not any(p.endswith("EmbeddedWorker") for p in paths) and not live.layer_spans_processes():
            logger.warning(
                "no embedded job worker and an in-memory channel layer: updates from workers in "
                "other processes will not reach the browsers of this one (set OVMWEB_REDIS_URL)."
            )

        from ovmweb.asgi import application

        services = []
        try:
            for path in paths:
                service = import_string(path)()
                service.start()
                services.append(service)
                logger.info("started %s", path)

            def ready() -> None:
                # Messages published from the worker thread are handed to the
                # loop that owns the browsers' WebSocket consumers.
                live.set_home_loop(asyncio.get_event_loop())
                self.stdout.write(f"ovmweb listening on http://{host}:{port}/", ending="\n")
                self.stdout.flush()

            Server(
                application=application,
                endpoints=build_endpoint_description_strings(host=host, port=port),
                signal_handlers=True,
                ready_callable=ready,
                # daphne gives an opening WebSocket 5 s (and the application 20 s to accept it): a
                # burst of console openings on a busy manager (session, ticket, SSH channel, audit
                # record each) was dropped half-open while it queued (bench/console_proxy.py --burst).
                websocket_handshake_timeout=HANDSHAKE_TIMEOUT,
                verbosity=options.get("verbosity", 1),
            ).run()
        finally:
            live.set_home_loop(None)
            for service in reversed(services):
                try:
                    service.stop()
                except Exception:
                    logger.exception("stopping %r failed", service)
