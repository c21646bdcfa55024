"""Serializer behaviour shared by every endpoint of the API."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers


class StrictFieldsMixin:
    """Refuse keys the serializer does not accept instead of silently dropping them.

    A typo in a field name (``memmory_mib``) or an attempt to write a read-only
    field (``status``) would otherwise be a 2xx that changed nothing, which is
    worse than a 400 naming the field.
    """

    default_error_messages = {
        "unknown_field": _("Unknown field."),
        "read_only_field": _("This field is read-only."),
    }

    def to_internal_value(self, data):
        errors = {}
        if hasattr(data, "keys"):
            for key in data:
                field = self.fields.get(key)
                if field is None:
                    errors[key] = [_("Unknown field.")]
                elif field.read_only:
                    errors[key] = [_("This field is read-only.")]
        if errors:
            raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


class StrictSerializer(StrictFieldsMixin, serializers.Serializer):
    """A plain input serializer that rejects unknown keys."""


class StrictModelSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    """A model serializer that rejects unknown keys. Its ``create``/``update``
    are never used: viewsets hand validated data to the service layer."""

    def create(self, validated_data):  # pragma: no cover - guard against misuse
        raise NotImplementedError("Viewsets call the service layer, never serializer.save().")

    def update(self, instance, validated_data):  # pragma: no cover - guard against misuse
        raise NotImplementedError("Viewsets call the service layer, never serializer.save().")
