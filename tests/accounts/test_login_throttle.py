"""Sign-in is throttled per user name and per address, on the web form and the admin's."""

from datetime import timedelta

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import RequestFactory, override_settings

from ovmweb.accounts import throttle
from ovmweb.accounts.models import LoginFailure
from tests.factories import SuperUserFactory, UserFactory

pytestmark = pytest.mark.django_db

RIGHT = "pw-test-123"  # tests.factories.UserFactory's password


@pytest.fixture
def alice():
    return UserFactory(username="alice")


def sign_in(client, username, password, address, url="/login/"):
    client.logout()
    response = client.post(url, {"username": username, "password": password}, REMOTE_ADDR=address)
    return response, SESSION_KEY in client.session


def test_the_sixth_attempt_is_refused_even_with_the_right_password(client, alice, caplog):
    UserFactory(username="bob")
    with caplog.at_level("INFO", logger="ovmweb.security"):
        for _ in range(5):
            response, signed_in = sign_in(client, "alice", "wrong-pw-1", "10.0.0.1")
            assert response.status_code == 200 and not signed_in
        response, signed_in = sign_in(client, "alice", RIGHT, "10.0.0.1")
    assert not signed_in
    assert "Too many failed sign-in attempts" in response.content.decode()
    # ... from another address as well: the user name is what is throttled
    assert sign_in(client, "alice", RIGHT, "10.0.0.9")[1] is False
    # another user from another address is unaffected
    response, signed_in = sign_in(client, "bob", RIGHT, "10.0.0.2")
    assert response.status_code == 302 and signed_in

    assert "sign-in failed: username='alice' address=10.0.0.1" in caplog.text
    assert "sign-in refused (too many failures): username='alice' address=10.0.0.1" in caplog.text
    assert "wrong-pw-1" not in caplog.text and RIGHT not in caplog.text


def test_the_refusal_ends_when_the_window_passes(client, alice, settings):
    for _ in range(5):
        sign_in(client, "alice", "wrong", "10.0.0.1")
    assert sign_in(client, "alice", RIGHT, "10.0.0.1")[1] is False
    LoginFailure.objects.update(
        at=throttle.timezone.now() - timedelta(seconds=settings.OVMWEB_LOGIN_FAILURE_WINDOW + 1)
    )
    assert sign_in(client, "alice", RIGHT, "10.0.0.1")[1] is True
    assert not LoginFailure.objects.filter(username="alice").exists()  # a success clears the name's failures


def test_an_address_is_throttled_across_user_names(client, alice):
    for n in range(20):
        sign_in(client, f"guess{n}", "wrong", "10.0.0.66")
    assert sign_in(client, "alice", RIGHT, "10.0.0.66")[1] is False
    assert sign_in(client, "alice", RIGHT, "10.0.0.7")[1] is True


def test_user_names_differing_in_case_count_together(client, alice):
    for name in ("alice", "Alice", "ALICE", "aLice", "alicE"):
        sign_in(client, name, "wrong", "10.0.0.1")
    assert sign_in(client, "alice", RIGHT, "10.0.0.3")[1] is False


def test_the_admin_sign_in_is_throttled_too(client):
    SuperUserFactory(username="root")
    for _ in range(5):
        sign_in(client, "root", "wrong", "10.0.0.1", url="/admin/login/")
    response, signed_in = sign_in(client, "root", RIGHT, "10.0.0.1", url="/admin/login/")
    assert not signed_in and "Too many failed sign-in attempts" in response.content.decode()


def test_a_refusal_through_authenticate_is_throttled_whatever_the_caller(alice):
    from django.contrib.auth import authenticate

    request = RequestFactory().post("/", REMOTE_ADDR="10.0.0.5")
    for _ in range(5):
        assert authenticate(request, username="alice", password="wrong") is None
    assert authenticate(request, username="alice", password=RIGHT) is None
    assert LoginFailure.objects.filter(username="alice").count() == 5  # refusals are not counted


@override_settings(OVMWEB_TRUSTED_PROXIES=["127.0.0.1"])
def test_the_client_address_comes_from_a_trusted_proxy_only():
    rf = RequestFactory()
    proxied = rf.get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9, 198.51.100.4")
    assert throttle.client_address(proxied) == "198.51.100.4"  # the proxy's own entry is the last
    spoofed = rf.get("/", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert throttle.client_address(spoofed) == "192.0.2.1"
    garbage = rf.get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="not-an-address")
    assert throttle.client_address(garbage) == "127.0.0.1"


def test_an_administrator_can_lift_a_throttle(client, alice):
    from io import StringIO

    from django.core.management import call_command

    UserFactory(username="carol")
    for name in ("alice", "carol"):
        for _ in range(5):
            sign_in(client, name, "wrong", "10.0.0.1")
    out = StringIO()
    call_command("clear_login_failures", "alice", stdout=out)
    assert out.getvalue().strip() == "5 failed sign-in(s) forgotten"
    assert sign_in(client, "alice", RIGHT, "10.0.0.4")[1] is True
    assert sign_in(client, "carol", RIGHT, "10.0.0.4")[1] is False
