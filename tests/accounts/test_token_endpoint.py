"""POST /api/v1/tokens/: a password for a token, throttled as the sign-in form."""

from __future__ import annotations

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from ovmweb.accounts.models import ApiToken
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def user():
    u = UserFactory(username="alice")
    u.set_password("right-pass-123")
    u.save()
    return u


def test_right_password_gives_a_working_token(user):
    client = APIClient()
    response = client.post("/api/v1/tokens/", {"username": "alice", "password": "right-pass-123"}, format="json")
    assert response.status_code == 201
    key = response.json()["token"]
    assert ApiToken.objects.get(user=user).prefix == key[:8]
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/jobs/").status_code in (200, 403)  # authenticated: not 401
    assert APIClient().get("/api/v1/jobs/").status_code in (401, 403)


def test_wrong_password_is_a_400_and_no_token(user):
    response = APIClient().post("/api/v1/tokens/", {"username": "alice", "password": "nope"}, format="json")
    assert response.status_code == 400
    assert response.json()["non_field_errors"] == ["Wrong user name or password."]
    assert not ApiToken.objects.exists()


def test_unknown_key_is_refused(user):
    body = {"username": "alice", "password": "right-pass-123", "scope": "all"}
    response = APIClient().post("/api/v1/tokens/", body, format="json")
    assert response.status_code == 400 and "scope" in response.json()


def test_throttled_after_the_sign_in_limit_even_with_the_right_password(user):
    client = APIClient()
    for _ in range(settings.OVMWEB_LOGIN_MAX_FAILURES_PER_USER):
        client.post("/api/v1/tokens/", {"username": "alice", "password": "wrong"}, format="json")
    response = client.post("/api/v1/tokens/", {"username": "alice", "password": "right-pass-123"}, format="json")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0 and "Too many" in response.json()["detail"]
    assert not ApiToken.objects.exists()
