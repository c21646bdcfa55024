"""A marker written on a guest's disk from inside the guest, read back from the disk's
image on the host: proof that the guest sees the disk and that its writes reach the image
(for the disk tests here and the point-in-time clone tests)."""

from __future__ import annotations

import subprocess  # nosec B404 - qemu-img on a test's own image
import tempfile
from pathlib import Path

from ovmweb.inventory.models import VirtualDisk

from .guest_console import GuestConsole

SECTOR = 512


def disk_image(disk: VirtualDisk) -> Path:
    return Path(disk.repository.path) / "VirtualDisks" / disk.volume


def guest_partitions(console: GuestConsole) -> dict[str, int]:
    """/proc/partitions inside the guest: device name -> size in KiB."""
    rows = {}
    for line in console.run("cat /proc/partitions").splitlines():
        words = line.split()
        if len(words) == 4 and words[2].isdigit():
            rows[words[3]] = int(words[2])
    return rows


def write_marker(console: GuestConsole, device: str, marker: str, *, sector: int = 1) -> None:
    """Write ``marker`` at ``sector`` of /dev/``device``. ``conv=fsync`` because the tiny guest's
    ``sync`` does not flush a block device's cache to QEMU; ``notrunc`` keeps the rest of the disk."""
    assert marker.isprintable() and "'" not in marker
    output = console.run(
        f"printf '%s' '{marker}' | dd of=/dev/{device} bs={SECTOR} seek={sector} conv=notrunc,fsync 2>&1; echo rc=$?"
    )
    assert output.splitlines()[-1] == "rc=0", output


def read_marker_in_guest(console: GuestConsole, device: str, length: int, *, sector: int = 1) -> str:
    return console.run(f"dd if=/dev/{device} bs={SECTOR} skip={sector} count=1 2>/dev/null | head -c {length}")


def read_image(image: Path, offset: int, length: int) -> bytes:
    """``length`` bytes at guest offset ``offset`` of a disk image, whatever its format
    (qemu-img turns a qcow2 into raw first). Read it while no VM writes it."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "disk.raw"
        subprocess.run(  # nosec B603 B607
            ["qemu-img", "convert", "-U", "-O", "raw", str(image), str(raw)], check=True, capture_output=True
        )
        with open(raw, "rb") as fh:
            fh.seek(offset)
            return fh.read(length)


def read_marker(image: Path, length: int, *, sector: int = 1) -> bytes:
    """What :func:`write_marker` wrote, read back from the host's image of the disk."""
    return read_image(image, sector * SECTOR, length)
