"""The audit trail: ``GET /api/v1/audit/`` (filters: user, action, object_type, object_id,
object, since, until) and one record by id. Read only: nobody writes it through the API."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view

from ovmweb.audit import selectors
from ovmweb.audit.models import AuditAction, AuditRecord
from ovmweb.inventory.permissions import scope

from ..serializers.audit import AuditFilterSerializer, AuditRecordSerializer
from .base import ReadOnlyApiViewSet

AUDIT_FILTER_PARAMETERS = [
    OpenApiParameter("user", OpenApiTypes.STR, description="User name (exact, any case)"),
    OpenApiParameter("action", OpenApiTypes.STR, enum=AuditAction.values),
    OpenApiParameter("object_type", OpenApiTypes.STR, description='"app_label.model", e.g. inventory.virtualmachine'),
    OpenApiParameter("object_id", OpenApiTypes.STR),
    OpenApiParameter("object", OpenApiTypes.STR, description="Part of the object's name"),
    OpenApiParameter("since", OpenApiTypes.DATETIME, description="From this time (included)"),
    OpenApiParameter("until", OpenApiTypes.DATETIME, description="Up to this time (excluded)"),
]


@extend_schema_view(list=extend_schema(parameters=AUDIT_FILTER_PARAMETERS))
class AuditRecordViewSet(ReadOnlyApiViewSet):
    queryset = AuditRecord.objects.select_related("user")
    serializer_class = AuditRecordSerializer
    permission_noun = "audit"

    def get_queryset(self):
        if self.action != "list":
            return super().get_queryset()
        filters = AuditFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        f = filters.validated_data
        records = selectors.audit_list(
            user=f.get("user", ""),
            action=f.get("action", ""),
            object_type=f.get("object_type", ""),
            object_id=f.get("object_id", ""),
            obj=f.get("object", ""),
            since=f.get("since"),
            until=f.get("until"),
        )
        return scope(self.request.user, "audit.view", records)
