"""What is measured, of what, and how long it is kept.

Every object keeps a fixed ring of slots per tier: a sample at time ``t`` goes to slot
``(t // step) % slots`` of its tier, overwriting what the slot held one span earlier. So
the rows of one object are at most ``ROWS_PER_OBJECT`` however long ovmweb runs; a
reading filters the ring by time (a slot left over from a VM's earlier run is older
than the range and is never shown).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _

VM, SERVER, REPOSITORY = 1, 2, 3
KINDS = {"vm": VM, "server": SERVER, "repository": REPOSITORY}


@dataclass(frozen=True)
class Tier:
    index: int
    step: int  # seconds per slot
    slots: int

    @property
    def span(self) -> int:
        return self.step * self.slots

    def bucket(self, ts: int) -> int:
        """The start of the slot's interval that holds ``ts``."""
        return ts - ts % self.step

    def slot(self, ts: int) -> int:
        return (ts // self.step) % self.slots


# 10 s for an hour, 1 min for a day, 10 min for a month (30 days).
TIERS = (Tier(0, 10, 360), Tier(1, 60, 1440), Tier(2, 600, 4320))
ROWS_PER_OBJECT = sum(t.slots for t in TIERS)
RANGES = {"hour": TIERS[0], "day": TIERS[1], "month": TIERS[2]}

# Series per kind of object: (name, unit, label). The names are the columns of ``Sample``.
SERIES = {
    VM: (
        ("cpu", "%", _("CPU use")),
        ("mem_actual", "bytes", _("Memory (actual)")),
        ("mem_used", "bytes", _("Memory used (balloon)")),
        ("disk_rd", "bytes/s", _("Disk read")),
        ("disk_wr", "bytes/s", _("Disk write")),
        ("disk_rd_ops", "ops/s", _("Disk read operations")),
        ("disk_wr_ops", "ops/s", _("Disk write operations")),
        ("net_rx", "bytes/s", _("Network received")),
        ("net_tx", "bytes/s", _("Network sent")),
    ),
    SERVER: (
        ("cpu", "%", _("CPU load")),
        ("mem_free", "bytes", _("Free memory")),
        ("mem_total", "bytes", _("Memory")),
        ("vm_count", "VMs", _("Running VMs")),
    ),
    REPOSITORY: (
        ("capacity", "bytes", _("Capacity")),
        ("allocation", "bytes", _("Allocation")),
        ("free", "bytes", _("Free space")),
    ),
}
COLUMNS = tuple(dict.fromkeys(name for series in SERIES.values() for name, _unit, _label in series))


def names(kind: int) -> tuple[str, ...]:
    return tuple(name for name, _unit, _label in SERIES[kind])
