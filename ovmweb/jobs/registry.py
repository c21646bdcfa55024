"""Registered job operations and the context they run with.

An operation is `fn(ctx: JobContext, **params) -> dict | None`, registered
with `@operation("vm.start")`. Every installed `ovmweb.<app>.operations`
module or package is imported by `autodiscover()` before a worker runs jobs.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable
from typing import Any

from django.apps import apps
from django.db.models import F, Value
from django.db.models.functions import Concat, Greatest
from django.utils import timezone
from django.utils.translation import gettext as _

from . import live
from .models import Job

OperationFn = Callable[..., "dict | None"]
_operations: dict[str, OperationFn] = {}
_discovered = False
_discover_lock = threading.Lock()


class JobAborted(Exception):
    """Raised by JobContext.check_abort when an abort was requested; ends the job ABORTED."""


class JobDeferred(Exception):
    """Raised by JobContext.defer_if_needed: the job goes back to the queue (keeping its
    locks) and runs again, from the start of its operation, ``delay`` seconds later."""

    def __init__(self, delay: float):
        super().__init__(delay)
        self.delay = delay


class UnknownOperation(Exception):
    pass


def operation(name: str) -> Callable[[OperationFn], OperationFn]:
    """Register `fn` as the implementation of job operation `name`."""

    def register(fn: OperationFn) -> OperationFn:
        existing = _operations.get(name)
        if existing is not None and existing is not fn and _qualname(existing) != _qualname(fn):
            raise ValueError(f"job operation {name!r} is already registered by {_qualname(existing)}")
        _operations[name] = fn
        return fn

    return register


def _qualname(fn: OperationFn) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def autodiscover() -> None:
    """Import every `ovmweb.<app>.operations` module (and a package's submodules) once."""
    global _discovered
    with _discover_lock:
        if _discovered:
            return
        for config in apps.get_app_configs():
            if not config.name.startswith("ovmweb."):
                continue
            name = f"{config.name}.operations"
            try:
                module = importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if exc.name == name:
                    continue
                raise
            if hasattr(module, "__path__"):
                for info in pkgutil.iter_modules(module.__path__):
                    importlib.import_module(f"{name}.{info.name}")
        _discovered = True


def get_operation(name: str) -> OperationFn:
    autodiscover()
    try:
        return _operations[name]
    except KeyError:
        raise UnknownOperation(_("Unknown job operation %(name)s.") % {"name": name}) from None


def registered_operations() -> list[str]:
    autodiscover()
    return sorted(_operations)


class JobContext:
    """What an operation sees of its job. Progress and log are written straight
    to the job row (outside the operation's own transactions) so followers see
    them while the job runs."""

    def __init__(self, job: Job):
        self.job = job
        self.user = job.user
        self.params: dict[str, Any] = dict(job.params)
        # Whether this run submitted children: only then must its end look for live ones.
        self.children_submitted = False

    @property
    def target(self):
        return self.job.target

    def progress(self, percent: int, message: str = "") -> None:
        """Advance progress to `percent` (never backwards), optionally logging `message`.
        A call that changes nothing (same percent, no message) writes and publishes nothing."""
        percent = max(self.job.progress, min(100, int(percent)))
        if percent == self.job.progress and not message:
            return
        # Only this context writes a running job's progress, unless children report
        # theirs into it (runner.maybe_finish_parent): then the database keeps the larger.
        updates: dict[str, Any] = {
            "progress": Greatest(F("progress"), Value(percent)) if self.children_submitted else percent
        }
        if message:
            updates["log"] = self._appended(self._line(message))
        Job.objects.filter(pk=self.job.pk).update(**updates)
        self.job.progress = percent
        live.publish("job", live.job_payload(self.job))

    def log(self, message: str) -> None:
        """Append a timestamped line to the job log."""
        Job.objects.filter(pk=self.job.pk).update(log=self._appended(self._line(message)))

    # A log this long is appended to in SQL rather than rewritten whole.
    _LOG_REWRITE_MAX = 16384

    def _appended(self, line: str):
        """The new value of the log column with ``line`` added (and ``job.log`` updated).
        Only this context appends to a running job's log, so the copy in memory is the
        row's: writing it whole is cheaper to build than a concatenation in SQL."""
        short = len(self.job.log) < self._LOG_REWRITE_MAX
        self.job.log += line
        return self.job.log if short else Concat(F("log"), Value(line))

    def check_abort(self) -> None:
        """Raise JobAborted if someone asked to abort this job (call between steps)."""
        if Job.objects.filter(pk=self.job.pk, abort_requested=True).exists():
            self.job.abort_requested = True
            raise JobAborted(_("Aborted on request."))

    def defer_if_needed(self, delay: float) -> None:
        """Call while waiting for something (a free export slot): raise JobDeferred when this
        worker thread is needed by other jobs (its pool is full and tasks are ready) or the
        worker is stopping; return when waiting here starves no one. An operation that calls
        it must be safe to run again from its start."""
        from .worker import thread_is_needed

        if thread_is_needed():
            raise JobDeferred(delay)

    def submit_child(self, **kwargs) -> Job:
        """Submit a child job of this one (same arguments as job_submit)."""
        from .services import job_submit

        kwargs.setdefault("user", self.user)
        self.children_submitted = True
        return job_submit(parent=self.job, **kwargs)

    @staticmethod
    def _line(message: str) -> str:
        return f"{timezone.now().isoformat(timespec='seconds')} {message}\n"
