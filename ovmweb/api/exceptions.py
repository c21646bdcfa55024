"""Domain exceptions become HTTP answers here, at the edge, and nowhere else."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.db.models import ProtectedError, RestrictedError
from django.utils.translation import gettext as _
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from ovmweb.errors import Conflict
from ovmweb.inventory.exceptions import InvalidTransition

logger = logging.getLogger(__name__)


def validation_error_data(exc: DjangoValidationError) -> dict:
    """A Django ValidationError as DRF-style field errors (``__all__`` -> ``non_field_errors``)."""
    if hasattr(exc, "error_dict"):
        data = {field: [str(m) for m in msgs] for field, msgs in exc.message_dict.items()}
        if "__all__" in data:
            data["non_field_errors"] = data.pop("__all__")
        return data
    return {"non_field_errors": [str(m) for m in exc.messages]}


def exception_handler(exc, context):
    if isinstance(exc, InvalidTransition | Conflict):
        set_rollback()
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, DjangoValidationError):
        set_rollback()
        return Response(validation_error_data(exc), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DjangoPermissionDenied):
        return Response({"detail": str(exc) or _("Permission denied.")}, status=status.HTTP_403_FORBIDDEN)
    if isinstance(exc, ProtectedError | RestrictedError):
        # The service should have said why; this only keeps a missed case from being a 500.
        set_rollback()
        names = ", ".join(
            sorted(
                {
                    str(o)
                    for o in list(exc.protected_objects if isinstance(exc, ProtectedError) else exc.restricted_objects)[
                        :5
                    ]
                }
            )
        )
        return Response(
            {"detail": _("Still in use by: %(names)s.") % {"names": names}}, status=status.HTTP_409_CONFLICT
        )
    if isinstance(exc, IntegrityError):
        # Two requests raced past a service's check into a database constraint.
        logger.warning("integrity error answered with 409: %s", exc)
        set_rollback()
        return Response(
            {"detail": _("The change conflicts with another object (a uniqueness or integrity rule).")},
            status=status.HTTP_409_CONFLICT,
        )
    return drf_exception_handler(exc, context)
