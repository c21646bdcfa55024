"""Point-in-time copies of a running domain's disks: libvirt's push-mode backup job.

``virDomainBackupBegin`` copies each chosen disk, as it was when the job STARTED
(QEMU's copy-before-write), into a new standalone qcow2 file; the domain keeps
running on its own disk and its definition is not touched (no overlay is left
behind, unlike an external snapshot). ``blockcopy`` is not used: it mirrors the
disk until the end, so its copy is the state at the end.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable

import libvirt

from ovmweb.errors import OperationFailed

from ..base import BackupResult
from .connection import Connection, errors

_POLL = 0.2
# libvirt's VIR_DOMAIN_BACKUP_BEGIN_QUIESCE (1 << 0), missing from some python bindings.
_QUIESCE = getattr(libvirt, "VIR_DOMAIN_BACKUP_BEGIN_QUIESCE", 1)


def backup_xml(disk_targets: dict[str, str], all_disks: list[str]) -> str:
    """The ``<domainbackup>`` document: ``disk_targets`` maps a disk's device name (vda)
    to the new file's absolute path; every other disk of the domain is left out."""
    root = ET.Element("domainbackup", mode="push")
    disks = ET.SubElement(root, "disks")
    for dev in all_disks:
        if dev in disk_targets:
            disk = ET.SubElement(disks, "disk", name=dev, backup="yes", type="file")
            ET.SubElement(disk, "target", file=disk_targets[dev])
            ET.SubElement(disk, "driver", type="qcow2")
        else:
            ET.SubElement(disks, "disk", name=dev, backup="no")
    return ET.tostring(root, encoding="unicode")


def _domain_disks(dom) -> dict[str, str]:
    """Source file -> device name of each disk (not CD-ROM) of the running domain."""
    root = ET.fromstring(dom.XMLDesc(0))  # nosec B314  # a libvirt document, not user input
    found = {}
    for disk in root.findall("./devices/disk[@device='disk']"):
        source, target = disk.find("source"), disk.find("target")
        if source is not None and target is not None and source.get("file"):
            found[source.get("file")] = target.get("dev")
    return found


class BackupMixin:
    def disks_backup(
        self: Connection,
        uuid: str,
        copies: dict[str, str],
        *,
        timeout: float = 3600.0,
        check_abort: Callable[[], None] | None = None,
    ) -> BackupResult:
        """Copy the disks of running domain ``uuid`` at one instant: ``copies`` maps a disk's
        source path to a new file's absolute path (which must not exist). Asks the guest
        agent to freeze the file systems first; where none answers the copy is
        crash-consistent, and the result says which. Returns once the job has finished."""
        dom = self._domain(uuid)
        with errors(f"reading the disks of domain {uuid}"):
            disks = _domain_disks(dom)
        missing = [path for path in copies if path not in disks]
        if missing:
            raise OperationFailed(f"domain {uuid} has no disk {', '.join(missing)}")
        document = backup_xml({disks[src]: dst for src, dst in copies.items()}, sorted(disks.values()))
        quiesced = _begin(dom, document)
        _wait(dom, uuid, timeout, check_abort)
        return BackupResult(quiesced=quiesced)


def _begin(dom, document: str) -> bool:
    """Start the backup job, frozen through the guest agent if one answers; True if it did."""
    try:
        dom.backupBegin(document, None, _QUIESCE)
        return True
    except libvirt.libvirtError:
        pass  # no guest agent (or it did not answer): a crash-consistent copy
    with errors("starting the backup job"):
        dom.backupBegin(document, None, 0)
    return False


def _wait(dom, uuid: str, timeout: float, check_abort: Callable[[], None] | None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with errors(f"watching the backup job of {uuid}"):
            active = dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE
        if not active:
            break
        try:
            if check_abort:
                check_abort()
            if time.monotonic() > deadline:
                raise OperationFailed(f"the backup of domain {uuid} did not finish in {timeout:.0f} s")
        except BaseException:
            try:
                dom.abortJob()
            except libvirt.libvirtError:
                pass
            raise
        time.sleep(_POLL)
    with errors(f"reading the backup job of {uuid}"):
        stats = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    if stats.get("type") != libvirt.VIR_DOMAIN_JOB_COMPLETED:
        raise OperationFailed(f"the backup of domain {uuid} failed: {stats.get('errmsg', 'job ' + str(stats))}")
