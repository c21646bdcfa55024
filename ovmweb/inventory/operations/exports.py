"""The ``vm.export`` job: a stopped VM as an OVA in a repository's Assemblies/ (see
``services/exports.py`` for the format and the seed's rules)."""

from __future__ import annotations

from ovmweb.jobs.registry import JobContext, operation

from ..services import export_host, exports


@operation(exports.OPERATION)
def vm_export(ctx: JobContext, **params) -> dict:
    # At most MAX_CONCURRENT_EXPORTS exports convert at once; this one waits its turn
    # (back in the queue when its worker thread is needed by other jobs).
    exports.export_wait_for_slot(
        job=ctx.job, progress=ctx.progress, check_abort=ctx.check_abort, defer=ctx.defer_if_needed
    )
    try:
        return export_host.export_run(job=ctx.job, progress=ctx.progress, log=ctx.log, check_abort=ctx.check_abort)
    except Exception:  # JobAborted included: the converted disks stay for a resume
        ctx.log(exports.export_partial_note(ctx.job))
        raise
