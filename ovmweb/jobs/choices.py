from django.db import models
from django.utils.translation import gettext_lazy as _


class JobStatus(models.TextChoices):
    QUEUED = "QUEUED", _("Queued")
    RUNNING = "RUNNING", _("Running")
    SUCCESS = "SUCCESS", _("Success")
    FAILURE = "FAILURE", _("Failure")
    ABORTED = "ABORTED", _("Aborted")


JobStatus.DONE = frozenset({JobStatus.SUCCESS, JobStatus.FAILURE, JobStatus.ABORTED})
JobStatus.LIVE = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})


class Severity(models.TextChoices):
    INFO = "INFO", _("Informational")
    WARNING = "WARNING", _("Warning")
    ERROR = "ERROR", _("Error")
    CRITICAL = "CRITICAL", _("Critical")
