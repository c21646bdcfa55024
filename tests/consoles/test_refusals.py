"""Every way a console WebSocket must be refused, through the real ASGI stack."""

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter

from ovmweb.consoles.models import ConsoleTicket
from ovmweb.consoles.routing import websocket_urlpatterns
from tests.consoles import ws

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def vm(local_server, running_vm, make_target):
    return running_vm(local_server, make_target("echo").port)


def _attempt(path, hdrs, app=None):
    async def run():
        comm = ws.communicator(path, hdrs, app)
        connected, _ = await comm.connect()
        await comm.disconnect()
        return connected

    return async_to_sync(run)()


def _path(vm, kind, token):
    return f"/ws/console/{kind}/{vm.pk}/?ticket={token}"


def test_valid_ticket_is_accepted(operator, vm):
    # The control case: without it every refusal below could pass by accident.
    assert _attempt(_path(vm, "serial", ws.issue(operator, vm, "serial")), ws.headers(operator)) is True


def test_expired_ticket(operator, vm):
    token = ws.issue(operator, vm, "serial")
    ConsoleTicket.objects.update(expires_at=ConsoleTicket.objects.get().created_at - timedelta(seconds=1))
    assert _attempt(_path(vm, "serial", token), ws.headers(operator)) is False


def test_reused_ticket(operator, vm):
    token = ws.issue(operator, vm, "serial")
    assert _attempt(_path(vm, "serial", token), ws.headers(operator)) is True
    assert _attempt(_path(vm, "serial", token), ws.headers(operator)) is False


def test_another_users_ticket(operator, vm, django_user_model):
    token = ws.issue(operator, vm, "serial")
    other = django_user_model.objects.create_superuser("other", "o@example.com", "pw-other-123")
    assert _attempt(_path(vm, "serial", token), ws.headers(other)) is False
    # and the ticket was not burnt by the attempt
    assert _attempt(_path(vm, "serial", token), ws.headers(operator)) is True


def test_no_session(operator, vm):
    token = ws.issue(operator, vm, "serial")
    assert _attempt(_path(vm, "serial", token), ws.headers(None)) is False


def test_missing_origin(operator, vm):
    token = ws.issue(operator, vm, "serial")
    assert _attempt(_path(vm, "serial", token), ws.headers(operator, origin=None)) is False


def test_missing_origin_refused_by_consumer_itself(operator, vm):
    # Without asgi.py's AllowedHostsOriginValidator in front: the consumer checks too.
    app = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
    token = ws.issue(operator, vm, "serial")
    assert _attempt(_path(vm, "serial", token), ws.headers(operator, origin=None), app) is False
    token = ws.issue(operator, vm, "serial")
    assert _attempt(_path(vm, "serial", token), ws.headers(operator), app) is True


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "http://localhost:9999", "http://localhost", "null", "file://"]
)
def test_foreign_origin(operator, vm, origin):
    token = ws.issue(operator, vm, "serial")
    assert _attempt(_path(vm, "serial", token), ws.headers(operator, origin=origin)) is False


def test_vm_the_user_may_not_see(operator, stranger, vm):
    # A ticket cannot be issued to the stranger, and the operator's does not work for them.
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        ws.issue(stranger, vm, "serial")
    token = ws.issue(operator, vm, "serial")
    assert _attempt(_path(vm, "serial", token), ws.headers(stranger)) is False


def test_permission_withdrawn_after_issue(operator, vm):
    token = ws.issue(operator, vm, "serial")
    operator.user_permissions.clear()
    assert _attempt(_path(vm, "serial", token), ws.headers(operator)) is False


def test_wrong_kind(operator, vm):
    token = ws.issue(operator, vm, "vnc")
    assert _attempt(_path(vm, "serial", token), ws.headers(operator)) is False


def test_wrong_vm(operator, vm, local_server, running_vm, make_target):
    other_vm = running_vm(local_server, make_target("echo").port)
    token = ws.issue(operator, vm, "serial")
    assert _attempt(_path(other_vm, "serial", token), ws.headers(operator)) is False


def test_no_ticket(operator, vm):
    assert _attempt(f"/ws/console/serial/{vm.pk}/", ws.headers(operator)) is False


def test_vm_stopped_after_issue(operator, vm):
    token = ws.issue(operator, vm, "serial")
    type(vm).objects.filter(pk=vm.pk).update(status="STOPPED")
    assert _attempt(_path(vm, "serial", token), ws.headers(operator)) is False


def test_console_port_closed(operator, local_server, running_vm, make_target):
    target = make_target("echo")
    vm = running_vm(local_server, target.port)
    target.close()
    assert _attempt(_path(vm, "serial", ws.issue(operator, vm, "serial")), ws.headers(operator)) is False


@pytest.mark.parametrize("hop", ["openssh_server", "asyncssh_server", "paramiko_server"])
def test_wrong_host_key_fails_closed(operator, hop, running_vm, make_target, request):
    server = request.getfixturevalue(hop)
    vm = running_vm(server, make_target("echo").port)
    server.host_key_fingerprint = "SHA256:" + "B" * 43
    server.save()
    assert _attempt(_path(vm, "serial", ws.issue(operator, vm, "serial")), ws.headers(operator)) is False


def test_per_vm_cap(operator, vm, settings):
    settings.OVMWEB_CONSOLE_MAX_PER_VM = 1
    from channels.db import database_sync_to_async

    from ovmweb.consoles.services import ConsoleLimitReached

    _issue = database_sync_to_async(ws.issue)
    ws_headers = ws.headers(operator)
    # Both tickets issued while nothing is open; the cap bites when the second connects.
    first_token, second_token = ws.issue(operator, vm, "serial"), ws.issue(operator, vm, "serial")

    async def run():
        first = ws.communicator(_path(vm, "serial", first_token), ws_headers)
        assert (await first.connect())[0] is True
        with pytest.raises(ConsoleLimitReached):
            await _issue(operator, vm, "serial")
        second = ws.communicator(_path(vm, "serial", second_token), ws_headers)
        refused = (await second.connect())[0] is False
        await first.disconnect()
        third = ws.communicator(_path(vm, "serial", await _issue(operator, vm, "serial")), ws_headers)
        reopened = (await third.connect())[0]
        await third.disconnect()
        return refused, reopened

    assert async_to_sync(run)() == (True, True)


def test_view_only_sessions_leave_the_reserved_slots_to_interactive_ones(operator, viewer, vm, settings):
    settings.OVMWEB_CONSOLE_MAX_PER_VM = 2
    settings.OVMWEB_CONSOLE_INTERACTIVE_RESERVED_PER_VM = 1
    from channels.db import database_sync_to_async

    from ovmweb.consoles.services import ConsoleLimitReached

    _issue = database_sync_to_async(ws.issue)
    viewer_headers, operator_headers = ws.headers(viewer), ws.headers(operator)
    # Both of the viewer's tickets issued while nothing is open; the reservation bites on connect.
    first_token, second_token = ws.issue(viewer, vm, "serial"), ws.issue(viewer, vm, "serial")

    async def run():
        first = ws.communicator(_path(vm, "serial", first_token), viewer_headers)
        assert (await first.connect())[0] is True
        with pytest.raises(ConsoleLimitReached):
            await _issue(viewer, vm, "serial")
        second = ws.communicator(_path(vm, "serial", second_token), viewer_headers)
        viewer_refused = (await second.connect())[0] is False
        # The slot the viewer could not take is there for a user who may type.
        interactive = ws.communicator(_path(vm, "serial", await _issue(operator, vm, "serial")), operator_headers)
        operator_admitted = (await interactive.connect())[0]
        await interactive.disconnect()
        await first.disconnect()
        return viewer_refused, operator_admitted

    assert async_to_sync(run)() == (True, True)
