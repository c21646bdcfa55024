"""Jobs and events (read only)."""

from __future__ import annotations

from rest_framework import serializers

from ovmweb.jobs.models import Event, Job

from .base import content_type_label


class JobSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)
    target_type = serializers.SerializerMethodField()
    children = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = Job
        # params are left out on purpose: they may carry what a user typed (a
        # discovery password must never be echoed back).
        fields = [
            "id",
            "summary",
            "operation",
            "status",
            "progress",
            "user",
            "target_type",
            "target_id",
            "target_name",
            "parent",
            "children",
            "log",
            "error",
            "result",
            "abort_requested",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_target_type(self, job) -> str | None:
        return content_type_label(job.target_type_id)


class EventSerializer(serializers.ModelSerializer):
    object_type = serializers.SerializerMethodField()
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)
    acknowledged_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Event
        fields = [
            "id",
            "object_type",
            "object_id",
            "object_repr",
            "severity",
            "type",
            "text",
            "acknowledged",
            "acknowledged_by",
            "user",
            "job",
            "created_at",
        ]
        read_only_fields = fields

    def get_object_type(self, event) -> str | None:
        return content_type_label(event.content_type_id)


class JobListSerializer(serializers.Serializer):
    """What ``POST /vms/{id}/messages/`` answers: one job per message."""

    jobs = JobSerializer(many=True)
