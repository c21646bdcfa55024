import hashlib
import logging

import pytest
from django.conf import settings

from ovmweb.consoles.models import ConsoleTicket
from ovmweb.consoles.services import TicketInvalid, ticket_redeem

pytestmark = pytest.mark.django_db


@pytest.fixture
def vm(local_server, running_vm):
    return running_vm(local_server, 10001)


def _post(client, vm, **data):
    return client.post(f"/api/v1/vms/{vm.pk}/console-tickets/", data, content_type="application/json")


def test_issue_ticket(client, operator, vm, caplog):
    client.force_login(operator)
    caplog.set_level(logging.DEBUG)
    response = _post(client, vm, kind="vnc")
    assert response.status_code == 201, response.content
    body = response.json()
    token = body["ticket"]
    assert body["ws_url"] == f"ws://testserver/ws/console/vnc/{vm.pk}/?ticket={token}"
    assert body["read_only"] is False and body["kind"] == "vnc" and body["vm"] == vm.pk
    assert body["session_seconds"] == settings.OVMWEB_CONSOLE_SESSION_LIFETIME  # the page counts it down
    assert response["Cache-Control"] == "no-store"
    row = ConsoleTicket.objects.get()
    # Only the hash is stored; the token appears in no log record.
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert all(token not in str(getattr(row, f.attname)) for f in ConsoleTicket._meta.fields)
    assert token not in caplog.text
    assert 55 <= (row.expires_at - row.created_at).total_seconds() <= 60


def test_view_only_user_gets_read_only_ticket(client, viewer, vm):
    client.force_login(viewer)
    response = _post(client, vm, kind="serial")
    assert response.status_code == 201
    assert response.json()["read_only"] is True


def test_stopped_vm_is_409(client, operator, vm):
    vm.status = "STOPPED"
    vm.save()
    client.force_login(operator)
    response = _post(client, vm, kind="vnc")
    assert response.status_code == 409
    assert "Stopped" in response.json()["detail"]


def test_bad_kind_is_400(client, operator, vm):
    client.force_login(operator)
    assert _post(client, vm, kind="rdp").status_code == 400
    assert _post(client, vm, kind="vnc", extra=1).status_code == 400


def test_no_permission_and_anonymous(client, stranger, vm):
    assert _post(client, vm, kind="vnc").status_code in (401, 403)
    client.force_login(stranger)
    assert _post(client, vm, kind="vnc").status_code == 403
    assert ConsoleTicket.objects.count() == 0


def test_unknown_vm_is_404(client, operator, vm):
    client.force_login(operator)
    response = client.post("/api/v1/vms/999999/console-tickets/", {"kind": "vnc"}, content_type="application/json")
    assert response.status_code == 404


def test_redeem_twice_concurrently_only_one_wins(client, operator, vm):
    client.force_login(operator)
    token = _post(client, vm, kind="vnc").json()["ticket"]
    assert ticket_redeem(token=token, user=operator, vm_id=vm.pk, kind="vnc").used_at is not None
    with pytest.raises(TicketInvalid):
        ticket_redeem(token=token, user=operator, vm_id=vm.pk, kind="vnc")
