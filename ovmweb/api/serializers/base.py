"""Pieces shared by the serializers of the REST API: limits, validators, the
primary-key field, and the base class of inventory objects."""

from __future__ import annotations

from django.contrib.contenttypes.models import ContentType
from django.core.validators import RegexValidator
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from ovmweb.inventory import models

from ..mixins import StrictModelSerializer

# Largest value every supported database stores in a positive big integer column.
MAX_BIGINT = 9223372036854775807
MAX_INT = 2147483647
fingerprint_validator = RegexValidator(
    r"^SHA256:[A-Za-z0-9+/]{43}=?$", _("Enter an OpenSSH SHA256 fingerprint like SHA256:abc... (43 base64 characters).")
)
mac_validator = models.mac_validator


def pk_field(queryset, **kwargs):
    """An object named by its primary key, among ``queryset``."""
    return serializers.PrimaryKeyRelatedField(queryset=queryset, **kwargs)


def members_field(queryset):
    """A group's member list, by primary key; optional (PATCH keeps it)."""
    return pk_field(queryset, many=True, required=False)


def with_id_and_timestamps(*names: str) -> list[str]:
    """``Meta.fields`` of an ``InventorySerializer``: the fields written, with id and timestamps around them."""
    return ["id", *names, "created_at", "updated_at"]


class InventorySerializer(StrictModelSerializer):
    """An inventory object that a service creates and changes: its id and timestamps are never input."""

    class Meta:
        read_only_fields = ["id", "created_at", "updated_at"]


def content_type_label(content_type_id: int | None) -> str | None:
    # ContentType.objects caches by id, so rendering a page costs no query per row.
    if content_type_id is None:
        return None
    ct = ContentType.objects.get_for_id(content_type_id)
    return f"{ct.app_label}.{ct.model}"


class ErrorDetailSerializer(serializers.Serializer):
    detail = serializers.CharField()
