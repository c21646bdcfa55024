"""``POST /api/v1/tokens/``: a user name and password for a new API token, so a script
(``ovmweb login``) need not ask an administrator to make one in the admin.

The password goes through ``django.contrib.auth.authenticate`` and so through the same
throttle as the sign-in form (``ThrottledModelBackend``): a throttled name or address
is answered 429 with ``Retry-After``, right password or not. The key is in this answer
only; the database keeps its digest (``tokens``)."""

from __future__ import annotations

from django.contrib.auth import authenticate
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from . import throttle, tokens


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")

    def to_internal_value(self, data):
        # Unknown keys are refused, as everywhere in the API (a misspelt field is not silently ignored).
        if isinstance(data, dict) and (unknown := sorted(set(data) - set(self.fields))):
            raise ValidationError({key: [_("Unknown field.")] for key in unknown})
        return super().to_internal_value(data)


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text=gettext_lazy("The key: shown this once, send it as 'Token <key>'."))
    name = serializers.CharField()
    username = serializers.CharField()


class TokenCreateView(APIView):
    authentication_classes: list = []  # a password is the credential here, not a session or token
    permission_classes = [AllowAny]

    @extend_schema(
        request=TokenRequestSerializer,
        responses={
            201: TokenSerializer,
            400: OpenApiResponse(description=gettext_lazy("Bad input, or wrong user name or password.")),
            429: OpenApiResponse(description=gettext_lazy("Too many failed sign-ins: try again later.")),
        },
        auth=[],
    )
    def post(self, request, format=None):
        """Make an API token for the user whose name and password are given."""
        data = TokenRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        username, password = data.validated_data["username"], data.validated_data["password"]
        try:
            throttle.enforce(username=username, address=throttle.client_address(request))
        except throttle.LoginThrottled as exc:
            return Response(
                {"detail": str(exc)},
                status=status.HTTP_429_TOO_MANY_REQUESTS,
                headers={"Retry-After": str(exc.retry_after)},
            )
        user = authenticate(request, username=username, password=password)
        if user is None or not user.is_active:
            raise ValidationError({"non_field_errors": [_("Wrong user name or password.")]})
        name = data.validated_data["name"] or _("ovmweb command line")
        _token, key = tokens.create_token(user=user, name=name)
        return Response({"token": key, "name": name, "username": user.get_username()}, status=status.HTTP_201_CREATED)
