"""Stored samples and raised thresholds.

``Sample`` is keyed by (kind, object, tier, slot) and only ever upserted on that key,
so its rows per object are bounded by construction (``series.ROWS_PER_OBJECT``).
Objects are named by kind and id rather than by foreign keys: one table serves VMs,
servers and repositories, and the sampler purges the rows of objects that are gone.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from . import series

KIND_CHOICES = [(series.VM, "vm"), (series.SERVER, "server"), (series.REPOSITORY, "repository")]


class Sample(models.Model):
    kind = models.PositiveSmallIntegerField(choices=KIND_CHOICES)
    object_id = models.PositiveBigIntegerField()
    tier = models.PositiveSmallIntegerField()
    slot = models.PositiveIntegerField()
    ts = models.BigIntegerField(help_text=_("Start of the interval, seconds since the epoch (UTC)."))
    # The union of every kind's series (series.SERIES); a column another kind has stays null.
    cpu = models.FloatField(null=True)
    mem_actual = models.FloatField(null=True)
    mem_used = models.FloatField(null=True)
    disk_rd = models.FloatField(null=True)
    disk_wr = models.FloatField(null=True)
    disk_rd_ops = models.FloatField(null=True)
    disk_wr_ops = models.FloatField(null=True)
    net_rx = models.FloatField(null=True)
    net_tx = models.FloatField(null=True)
    mem_free = models.FloatField(null=True)
    mem_total = models.FloatField(null=True)
    vm_count = models.FloatField(null=True)
    capacity = models.FloatField(null=True)
    allocation = models.FloatField(null=True)
    free = models.FloatField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "object_id", "tier", "slot"], name="metrics_sample_ring_slot")
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.object_id} tier {self.tier} @ {self.ts}"


class Alarm(models.Model):
    """A threshold an object is over now; the row exists from the WARNING event that raised
    it until the event that cleared it (so a restart neither repeats nor forgets it)."""

    kind = models.PositiveSmallIntegerField(choices=KIND_CHOICES)
    object_id = models.PositiveBigIntegerField()
    rule = models.CharField(max_length=32)
    raised_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "object_id", "rule"], name="metrics_alarm_once")]

    def __str__(self) -> str:
        return f"{self.rule} on {self.get_kind_display()} {self.object_id}"
