"""Signals of the job machinery."""

from django.dispatch import Signal

# Sent by recovery for each job found RUNNING (or queued without a task) at
# worker start, after it was marked FAILURE and its locks were released.
# Receivers re-read the real state of the job's target. Arguments: job.
job_interrupted = Signal()
