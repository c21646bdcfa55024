"""Reads that only the UI needs (navigation tree, job panel, event lists).
VM reads go through ``ovmweb.inventory.selectors``; these stay permission-aware
by taking the user and bounded in query count."""

from __future__ import annotations

from django.contrib.contenttypes.models import ContentType
from django.db.models import Count, Prefetch, Q, QuerySet

from ovmweb.inventory import permissions
from ovmweb.inventory.models import Network, Repository, Server, ServerPool, VirtualMachine
from ovmweb.jobs.models import Event, Job

JOB_PANEL_SIZE = 8


def nav_tree(user=None) -> dict:
    """Server pools with their servers, and servers outside any pool: two queries. With
    ``user``: only the pools and servers the user may view (roles per pool)."""
    servers = Server.objects.only("id", "name", "status", "server_pool_id", "inbound_migration_lock").order_by("name")
    pools = ServerPool.objects.all()
    if user is not None:
        servers = permissions.scope(user, "server.view", servers)
        pools = permissions.scope(user, "pool.view", pools)
    pools = pools.prefetch_related(Prefetch("servers", queryset=servers)).order_by("name")
    unassigned = [s for s in servers.filter(server_pool__isnull=True)]
    return {"pools": pools, "unassigned_servers": unassigned}


def job_panel(*, user) -> list[Job]:
    """Live jobs first, then the most recent finished ones: what the bottom panel shows
    (only jobs the user may see)."""
    qs = (
        permissions.scope(user, "job.view", Job.objects.filter(parent__isnull=True))
        .select_related("user")
        .only(
            "id",
            "summary",
            "status",
            "progress",
            "created_at",
            "finished_at",
            "target_name",
            "abort_requested",
            "user__username",
            "error",
        )
    )
    return list(qs.order_by("-created_at", "-id")[:JOB_PANEL_SIZE])


def job_list(*, user, status: str | None = None) -> QuerySet[Job]:
    qs = (
        permissions.scope(user, "job.view", Job.objects.filter(parent__isnull=True))
        .select_related("user")
        .annotate(n_children=Count("children"))
    )
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-created_at", "-id")


def job_detail(*, user, job_id: int) -> Job:
    jobs = permissions.scope(user, "job.view", Job.objects.all())
    return jobs.select_related("user", "parent").prefetch_related("children").get(pk=job_id)


def event_list(*, user, obj=None, severity: str | None = None, unacknowledged: bool = False) -> QuerySet[Event]:
    qs = permissions.scope(user, "event.view", Event.objects.all()).select_related("user", "acknowledged_by")
    if obj is not None:
        qs = qs.filter(content_type=ContentType.objects.get_for_model(obj), object_id=obj.pk)
    if severity:
        qs = qs.filter(severity=severity)
    if unacknowledged:
        qs = qs.filter(acknowledged=False)
    return qs.order_by("-created_at", "-id")


def server_list(user=None) -> QuerySet[Server]:
    servers = Server.objects.all() if user is None else permissions.scope(user, "server.view", Server.objects.all())
    return (
        servers.select_related("server_pool")
        .annotate(
            n_vms=Count("vms", distinct=True),
            n_running=Count("vms", filter=Q(vms__status="RUNNING"), distinct=True),
        )
        .order_by("name")
    )


def repository_list() -> QuerySet[Repository]:
    return (
        Repository.objects.select_related("server")
        .prefetch_related("server_pools")
        .annotate(n_isos=Count("iso_files", distinct=True), n_disks=Count("virtual_disks", distinct=True))
        .order_by("name")
    )


def network_list() -> QuerySet[Network]:
    return Network.objects.prefetch_related("server_pools").annotate(n_vnics=Count("vnics")).order_by("name")


def vms_of_repository(repository: Repository) -> QuerySet[VirtualMachine]:
    return VirtualMachine.objects.filter(repository=repository).select_related("server").order_by("name")
