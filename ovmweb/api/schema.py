"""OpenAPI generation that tells the truth about strict input."""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import force_instance

from .mixins import StrictFieldsMixin


class StrictAutoSchema(AutoSchema):
    """Request bodies of strict serializers declare ``additionalProperties: false``:
    the API answers 400 to an unknown key, and the schema says so."""

    def _map_serializer(self, serializer, direction, bypass_extensions=False):
        schema = super()._map_serializer(serializer, direction, bypass_extensions)
        if (
            direction == "request"
            and isinstance(force_instance(serializer), StrictFieldsMixin)
            and schema.get("type") == "object"
        ):
            schema["additionalProperties"] = False
        return schema
