"""``--wait``: follow jobs to their end with a progress bar each; say which failed and why."""

from __future__ import annotations

import time

from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from .client import EXIT_JOB_FAILED, Client, CliError
from .output import err, note, print_json

DONE = {"SUCCESS", "FAILURE", "ABORTED"}
POLL_SECONDS = 0.5


def announce(jobs: list[dict], *, as_json: bool, wait: bool) -> None:
    """Say what was queued (unless the waiting will print the jobs' ends instead)."""
    if as_json and not wait:
        print_json(jobs)
    elif not as_json:
        for job in jobs:
            note(f"job {job['id']} queued: {job.get('summary') or job.get('operation')}")


def wait_for(client: Client, jobs: list[dict], *, as_json: bool, timeout: float | None = None) -> int:
    """Poll every job until it is done. The exit code: 0 if all succeeded, 1 otherwise."""
    jobs = {job["id"]: job for job in jobs}
    deadline = None if timeout is None else time.monotonic() + timeout
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=as_json,
    ) as progress:
        tasks = {
            pk: progress.add_task(_label(job), total=100, completed=job.get("progress") or 0, status=job["status"])
            for pk, job in jobs.items()
        }
        while not all(job["status"] in DONE for job in jobs.values()):
            if deadline is not None and time.monotonic() > deadline:
                raise CliError(f"gave up waiting after {timeout:.0f} s (the jobs go on)", EXIT_JOB_FAILED)
            time.sleep(POLL_SECONDS)
            for pk in [pk for pk, job in jobs.items() if job["status"] not in DONE]:
                jobs[pk] = job = client.get(f"jobs/{pk}/")
                progress.update(tasks[pk], completed=job.get("progress") or 0, status=job["status"])
    return report(list(jobs.values()), as_json=as_json)


def report(jobs: list[dict], *, as_json: bool) -> int:
    if as_json:
        print_json(jobs)
    failed = [job for job in jobs if job["status"] != "SUCCESS"]
    for job in failed:
        reason = (job.get("error") or "").strip().splitlines()
        note(f"ovmweb: job {job['id']} ({_label(job)}) {job['status']}: {reason[-1] if reason else 'no reason given'}")
    return EXIT_JOB_FAILED if failed else 0


def _label(job: dict) -> str:
    return f"#{job['id']} {job.get('summary') or job.get('operation', '')}"
