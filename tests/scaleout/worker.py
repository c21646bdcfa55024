"""`manage.py runjobworker` for tests/scaleout, with the one test operation it counts.

``python tests/scaleout/worker.py [runjobworker options]``: everything else (database,
Redis) comes from the environment, as for any worker process a user starts.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ovmweb.settings.base")

import django

django.setup()

from django.core.management import call_command  # noqa: E402

from ovmweb.jobs.registry import JobContext, operation  # noqa: E402
from ovmweb.jobs.services import event_record  # noqa: E402

WORKER_PID = os.getpid()


@operation("test.count")
def count(ctx: JobContext, **params) -> None:
    # One Event per run (a job run twice would show two), naming the worker process that ran it
    # (RQ runs each job in a forked child of the worker).
    event_record(obj=None, type="test.count", text=f"worker {WORKER_PID}", job=ctx.job)


if __name__ == "__main__":
    call_command("runjobworker", *sys.argv[1:])
