"""Reading the audit trail, with the filters the page and the API share."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q, QuerySet

from .models import AuditRecord


def audit_list(
    *,
    user: str = "",
    action: str = "",
    object_type: str = "",
    object_id: str = "",
    obj: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet:
    """Newest first. ``user``: a user name (exact, case-insensitive); ``obj``: part of the
    object's name; ``object_type``: "app_label.model"; ``since``/``until``: a time range
    (``until`` excluded). The caller has checked ``audit.view``."""
    qs = AuditRecord.objects.select_related("user")
    if user:
        qs = qs.filter(Q(username__iexact=user) | Q(user__username__iexact=user))
    if action:
        qs = qs.filter(action=action)
    if object_type:
        qs = qs.filter(object_type=object_type.lower())
    if object_id:
        qs = qs.filter(object_id=object_id)
    if obj:
        qs = qs.filter(object_repr__icontains=obj)
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if until is not None:
        qs = qs.filter(created_at__lt=until)
    return qs
