"""The export itself, run by the ``vm.export`` job on a server that sees the VM's disks
and the target repository (``exports.py`` describes the OVA and the rules): ``qemu-img
convert`` and ``tar`` as subprocesses for the ``local`` transport, as commands on one
pinned SSH connection otherwise, each abortable while it runs."""

from __future__ import annotations

import json
import os
import re
import selectors
import shlex
import shutil
import subprocess
from collections import deque
from collections.abc import Callable
from pathlib import PurePosixPath

from django.db import transaction
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict
from ovmweb.jobs.models import Job
from ovmweb.jobs.services import event_record

from ..choices import ServerStatus
from ..models import Repository, Server, VirtualMachine
from .export_ovf import CONTROLLERS, build_ovf
from .exports import DISK_EXTENSION
from .repositories import repository_servers
from .server_files import SftpFiles, server_files

# Seconds between two abort checks while a command runs.
ABORT_POLL = 0.5


# ustar stores sizes up to 8 GiB - 1; a larger disk needs the POSIX (pax) format.
USTAR_MAX = 8 * 1024**3 - 1


TAR_RECORD = 10240  # GNU tar's default record (blocking factor 20)


TAR_CHECKPOINT = 1024  # records between two progress lines (10 MiB)


QEMU_PROGRESS = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")


TAR_PROGRESS = re.compile(rb"tar: (\d+)")


class ExportError(Conflict):
    """An export step that failed on the server, with what the command said."""


def export_server(*, vm: VirtualMachine, repository: Repository, plan: list[dict]) -> Server:
    """A running server that sees the target repository and every disk's repository
    (the VM's own server if it qualifies); the export runs there."""
    repo_ids = {repository.pk} | {d["repository_id"] for d in plan}
    candidates: set[int] | None = None
    for repo in Repository.objects.filter(pk__in=repo_ids):
        ids = {s.pk for s in repository_servers(repo)}
        candidates = ids if candidates is None else candidates & ids
    servers = list(Server.objects.filter(pk__in=candidates or (), status=ServerStatus.RUNNING).order_by("pk"))
    if not servers:
        raise Conflict(
            _(
                "No running server sees repository %(repo)s and every disk of %(vm)s: the export needs one "
                "to convert the disks on."
            )
            % {"repo": repository.name, "vm": vm.name}
        )
    own = next((s for s in servers if s.pk == vm.server_id), None)
    return own or servers[0]


def _dies_with_caller(argv: list[str]) -> list[str]:
    """``argv`` run so that the kernel kills it when the thread that started it dies.

    A worker killed mid-export (SIGKILL, OOM) would otherwise leave its qemu-img
    converting for minutes, holding the disk open while recovery marks the job
    failed and a resumed export starts a second conversion of the same file.
    util-linux's setpriv sets PR_SET_PDEATHSIG before exec; subprocess's
    preexec_fn could do it too, but is unsafe in a threaded worker."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv


class ExportHost:
    """Commands and small files on the server doing the export."""

    def __init__(self, files):
        self.files = files

    def run(self, argv: list[str], *, timeout: float = 600) -> str:
        code, out, err = self.files.run(argv, timeout=timeout)
        if code != 0:
            raise ExportError(
                _("%(cmd)s failed (exit %(code)s): %(err)s")
                % {"cmd": argv[0], "code": code, "err": (err or out).strip()[-500:]}
            )
        return out

    def write(self, path: str, data: bytes) -> None:
        self.files.write(path, [data])

    def stream(self, argv: list[str], *, on_output: Callable[[bytes], None], check_abort: Callable[[], None]) -> None:
        """Run a long command, feeding each output line (``\\r`` or ``\\n`` ended) to
        ``on_output``; ``check_abort`` runs every ABORT_POLL seconds and, if it raises,
        the command is stopped before the exception goes on."""
        tail: deque[bytes] = deque(maxlen=20)
        buffer = b""

        def feed(data: bytes) -> None:
            nonlocal buffer
            buffer += data
            *lines, buffer = re.split(rb"[\r\n]", buffer)
            for line in lines:
                if line.strip():
                    tail.append(line)
                    on_output(line)

        if isinstance(self.files, SftpFiles):
            code = self._stream_ssh(argv, feed, check_abort)
        else:
            code = self._stream_local(argv, feed, check_abort)
        if buffer.strip():
            tail.append(buffer)
        if code != 0:
            said = b" | ".join(line.strip() for line in list(tail)[-3:]).decode("utf-8", "replace")
            raise ExportError(
                _("%(cmd)s failed (exit %(code)s): %(err)s") % {"cmd": argv[0], "code": code, "err": said}
            )

    @staticmethod
    def _stream_local(argv, feed, check_abort) -> int:
        proc = subprocess.Popen(
            _dies_with_caller(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ)
                while True:
                    if sel.select(timeout=ABORT_POLL):
                        data = os.read(proc.stdout.fileno(), 65536)
                        if not data:
                            break
                        feed(data)
                    check_abort()
            return proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()

    def _stream_ssh(self, argv, feed, check_abort) -> int:
        channel = self.files.client.get_transport().open_session()
        try:
            # With a terminal, closing the channel hangs the command up on the server.
            channel.get_pty(width=200)
            channel.settimeout(ABORT_POLL)
            channel.exec_command(shlex.join(argv))
            while True:
                try:
                    data = channel.recv(65536)
                except TimeoutError:
                    data = None
                if data == b"":
                    break
                if data:
                    feed(data)
                check_abort()
            return channel.recv_exit_status()
        finally:
            channel.close()


def _check_paths(params: dict, repository: Repository) -> None:
    # The job removes its work directory at the end: never anything but its own.
    assemblies = f"{repository.path}/Assemblies/"
    ova, directory = params["ova"], params["directory"]
    if not (ova.startswith(assemblies) and directory == f"{ova}.parts" and "/" not in ova[len(assemblies) :]):
        raise ExportError(_("Export target %(ova)s is not in %(dir)s.") % {"ova": ova, "dir": assemblies})


def _qemu_info(host: ExportHost, path: str, fmt: str | None = None) -> dict:
    argv = ["qemu-img", "info", "--output=json", *(["-f", fmt] if fmt else []), path]
    return json.loads(host.run(argv, timeout=120))


def _size(host: ExportHost, path: str) -> int:
    return int(host.run(["stat", "-c", "%s", path], timeout=60).strip())


def export_run(
    *, job: Job, progress: Callable[..., None], log: Callable[[str], None], check_abort: Callable[[], None]
) -> dict:
    """Convert the disks, write the descriptor and manifest, pack the OVA, on the server.
    Progress: 0-5 preparing, 5-85 disks (by capacity), 85-90 checksums, 90-100 the tar."""
    params = job.params
    vm = VirtualMachine.objects.get(pk=params["vm_id"])
    repository = Repository.objects.get(pk=params["repository_id"])
    _check_paths(params, repository)
    directory, ova, name = params["directory"], params["ova"], params["name"]
    disks = [dict(d) for d in params["disks"]]
    # Chosen when the job runs, not when it is queued: a resumed export may run on
    # another server that sees the same repositories.
    server = export_server(vm=vm, repository=repository, plan=disks)
    with server_files(server) as files:
        host = ExportHost(files)
        host.run(["mkdir", "-p", directory], timeout=60)
        _inspect_disks(host, disks, directory)
        progress(
            5,
            _("Exporting %(n)d disk(s) on %(server)s into %(ova)s.")
            % {"n": len(disks), "server": server.name, "ova": ova},
        )
        _convert_disks(host, disks, progress=progress, log=log, check_abort=check_abort)
        check_abort()
        members = _write_descriptor(host, vm=vm, disks=disks, directory=directory, name=name, check_abort=check_abort)
        progress(90, _("Descriptor and manifest written; packing the OVA."))
        tar_format = _pack(
            host, directory=directory, ova=ova, members=members, progress=progress, check_abort=check_abort
        )
        size = _size(host, ova)
        host.run(["rm", "-rf", "--", directory], timeout=600)
    result = {
        "ova": ova,
        "size_bytes": size,
        "repository_id": repository.pk,
        "server_id": server.pk,
        "disk_format": "vmdk (streamOptimized)",
        "tar_format": tar_format,
        "disks": [
            {
                "slot": d["slot"],
                "file": d["file"],
                "capacity_bytes": d["capacity_bytes"],
                "size_bytes": d["size_bytes"],
                "converted": d["converted"],
            }
            for d in disks
        ],
    }
    if params.get("resumed_from"):
        result["resumed_from"] = params["resumed_from"]
    with transaction.atomic():
        event_record(
            obj=vm,
            type="vm.exported",
            job=job,
            text=_("Virtual machine %(vm)s exported to %(ova)s (%(n)d disk(s)).")
            % {"vm": vm.name, "ova": ova, "n": len(disks)},
        )
    return result


def _inspect_disks(host: ExportHost, disks: list[dict], directory: str) -> None:
    """Each disk's capacity, target file, and whether this run converts it (``converted``)
    or an earlier, interrupted run already did (its target file exists)."""
    for disk in disks:
        disk["capacity_bytes"] = int(_qemu_info(host, disk["source"], disk["source_format"])["virtual-size"])
        disk["target"] = f"{directory}/{disk['file']}"
        code, _out, _err = host.files.run(["test", "-f", disk["target"]], timeout=60)
        # Converted by this run (True) or kept from an earlier, interrupted run.
        disk["converted"] = code != 0


def _convert_disks(
    host: ExportHost,
    disks: list[dict],
    *,
    progress: Callable[..., None],
    log: Callable[[str], None],
    check_abort: Callable[[], None],
) -> None:
    """Convert every disk not kept from an earlier run (progress 5-85, by capacity); note each size."""
    total = sum(d["capacity_bytes"] for d in disks) or 1
    done = 0
    for n, disk in enumerate(disks, 1):
        check_abort()
        if not disk["converted"]:
            log(
                _("Disk %(n)d of %(total)d (slot %(slot)s) was converted by an earlier run: kept.")
                % {"n": n, "total": len(disks), "slot": disk["slot"]}
            )
        else:
            _convert_disk(host, disk, done=done, total=total, progress=progress, check_abort=check_abort)
            progress(
                5 + int(80 * (done + disk["capacity_bytes"]) / total),
                _("Disk %(n)d of %(total)d (slot %(slot)s) converted.")
                % {"n": n, "total": len(disks), "slot": disk["slot"]},
            )
        disk["size_bytes"] = _size(host, disk["target"])
        done += disk["capacity_bytes"]


def _convert_disk(
    host: ExportHost,
    disk: dict,
    *,
    done: int,
    total: int,
    progress: Callable[..., None],
    check_abort: Callable[[], None],
) -> None:
    """One disk to a streamOptimized VMDK, through ``<target>.part`` (removed if the conversion fails)."""
    part = f"{disk['target']}.part"
    adapter = CONTROLLERS.get(disk["bus"], CONTROLLERS["sata"])[3]
    capacity = disk["capacity_bytes"]

    def on_output(line: bytes) -> None:
        match = QEMU_PROGRESS.search(line)
        if match:
            progress(5 + int(80 * (done + capacity * float(match.group(1)) / 100) / total))

    try:
        host.stream(
            [
                "qemu-img",
                "convert",
                "-p",
                "-f",
                disk["source_format"],
                "-O",
                DISK_EXTENSION,
                "-o",
                f"subformat=streamOptimized,adapter_type={adapter}",
                disk["source"],
                part,
            ],
            on_output=on_output,
            check_abort=check_abort,
        )
    except BaseException:
        host.files.run(["rm", "-f", "--", part], timeout=60)
        raise
    # The final name appears only once the disk is complete: what a resume relies on.
    host.run(["mv", "-f", "--", part, disk["target"]], timeout=60)


def _write_descriptor(
    host: ExportHost, *, vm: VirtualMachine, disks: list[dict], directory: str, name: str, check_abort
) -> list[str]:
    """Write ``<name>.ovf`` and its SHA256 manifest ``<name>.mf``; returns the OVA's members in
    OVF's order: the descriptor, then the manifest, then the disks."""
    ovf_name, mf_name = f"{name}.ovf", f"{name}.mf"
    host.write(f"{directory}/{ovf_name}", build_ovf(vm=vm, disks=disks).encode())
    members = [ovf_name] + [d["file"] for d in disks]
    sums = _checksums(host, directory, members, check_abort)
    host.write(f"{directory}/{mf_name}", "".join(f"SHA256({m})= {sums[m]}\n" for m in members).encode())
    members.insert(1, mf_name)
    return members


def _pack(
    host: ExportHost,
    *,
    directory: str,
    ova: str,
    members: list[str],
    progress: Callable[..., None],
    check_abort: Callable[[], None],
) -> str:
    """Tar ``members`` into ``ova`` through ``<ova>.part`` (progress 90-99); returns the tar format."""
    sizes = [_size(host, f"{directory}/{m}") for m in members]
    tar_format = "ustar" if max(sizes) <= USTAR_MAX else "posix"
    records = sum(sizes) // TAR_RECORD + len(members) + 1

    def on_tar(line: bytes) -> None:
        match = TAR_PROGRESS.search(line)
        if match:
            progress(90 + int(9 * min(1.0, int(match.group(1)) / records)))

    try:
        # The descriptor first, then the manifest, then the disks (OVF's order).
        host.stream(
            [
                "tar",
                f"--format={tar_format}",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                f"--checkpoint={TAR_CHECKPOINT}",
                "--checkpoint-action=echo=%u",
                "-cf",
                f"{ova}.part",
                "-C",
                directory,
                "--",
                *members,
            ],
            on_output=on_tar,
            check_abort=check_abort,
        )
        host.run(["mv", "-f", "--", f"{ova}.part", ova], timeout=60)
    except BaseException:
        host.files.run(["rm", "-f", "--", f"{ova}.part"], timeout=60)
        raise
    return tar_format


def _checksums(host: ExportHost, directory: str, members: list[str], check_abort) -> dict[str, str]:
    sums: dict[str, str] = {}

    def on_output(line: bytes) -> None:
        digest, _sep, name = line.decode("utf-8", "replace").strip().partition("  ")
        if re.fullmatch(r"[0-9a-f]{64}", digest):
            sums[PurePosixPath(name).name] = digest

    host.stream(
        ["sha256sum", "--", *[f"{directory}/{m}" for m in members]], on_output=on_output, check_abort=check_abort
    )
    missing = [m for m in members if m not in sums]
    if missing:
        raise ExportError(_("No checksum for %(f)s.") % {"f": ", ".join(missing)})
    return sums
