"""The audit trail (read only) and its list filters."""

from __future__ import annotations

from rest_framework import serializers

from ovmweb.audit.models import AuditAction, AuditRecord


class AuditRecordSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = AuditRecord
        fields = [
            "id",
            "created_at",
            "action",
            "user",
            "username",
            "address",
            "object_type",
            "object_id",
            "object_repr",
            "outcome",
            "detail",
            "ended_at",
            "bytes_to_console",
            "bytes_from_console",
        ]
        read_only_fields = fields


class AuditFilterSerializer(serializers.Serializer):
    """The query string of ``GET /api/v1/audit/`` (the paging keys are the paginator's)."""

    user = serializers.CharField(required=False, max_length=150)
    action = serializers.ChoiceField(required=False, choices=AuditAction.choices)
    object_type = serializers.CharField(required=False, max_length=100)
    object_id = serializers.CharField(required=False, max_length=64)
    object = serializers.CharField(required=False, max_length=255)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
