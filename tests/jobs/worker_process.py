"""A `runjobworker --batch` process for tests/jobs/test_parallel.py, with one more test operation.

``python tests/jobs/worker_process.py THREADS``: the database comes from the environment
(OVMWEB_SQLITE_PATH or OVMWEB_DATABASE_URL), as for any worker process.
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


@operation("test.count")
def count(ctx: JobContext, **params) -> None:
    # One Event per run: a job run twice would show two.
    event_record(obj=None, type="test.count", text=f"run of job #{ctx.job.pk}", job=ctx.job)


if __name__ == "__main__":
    call_command("runjobworker", "--batch", "--no-recover", "--interval", "0.02", "--threads", sys.argv[1])
