"""The retention purge as an embedded service of ``manage.py runovmweb``: once at start,
then once a day, on a daemon thread. ``manage.py purge_audit`` runs the same purge."""

from __future__ import annotations

import logging
import threading

from django.db import connections

logger = logging.getLogger(__name__)

DAY = 24 * 3600


def purge_once() -> int:
    from .services import purge_expired

    try:
        deleted = purge_expired()
    except Exception:  # a failed purge must not stop the serving process; retried tomorrow
        logger.exception("audit purge failed")
        return 0
    if deleted:
        logger.info("purged %d audit record(s) past the retention period", deleted)
    return deleted


class DailyPurge:
    def __init__(self, *, interval: float = DAY):
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ovmweb-audit-purge", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                purge_once()
                if self._stop.wait(self.interval):
                    return
        finally:
            connections.close_all()  # this thread's own connection

    def stop(self, timeout: float = 5) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
