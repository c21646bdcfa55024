"""The guest message log (seed 7.10) is readable in the API and on the VM's pages, hidden
values as asterisks, unlogged ones not at all, for who may view the VM's messages only."""

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from ovmweb.inventory import choices
from ovmweb.inventory.services.messages import vm_send_messages
from tests import factories as f

pytestmark = pytest.mark.django_db

SECRET = "s3cret-pw"


@pytest.fixture
def vm_with_messages():
    owner = f.SuperUserFactory()
    vm = f.VirtualMachineFactory(status=choices.VmStatus.RUNNING, server=f.ServerFactory())
    vm_send_messages(
        vm=vm,
        user=owner,
        messages=[
            {"key": "com.oracle.linux.root-password", "value": SECRET, "hidden": True},
            {"key": "app.mode", "value": "blue"},
            {"key": "app.token", "value": "unlogged-value", "log": False},
        ],
    )
    return vm


def _client(*codenames):
    user = f.UserFactory()
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = APIClient()
    client.force_login(user)
    return client


def test_the_api_lists_the_log_hidden_values_as_asterisks(vm_with_messages):
    client = _client("view_virtualmachine", "view_vmmessage")
    body = client.get(f"/api/v1/vms/{vm_with_messages.pk}/message-log/").json()
    rows = {row["key"]: row for row in body["results"]}
    assert body["count"] == 3
    assert rows["com.oracle.linux.root-password"]["value"] == "********"
    assert rows["com.oracle.linux.root-password"]["hidden"] is True
    assert rows["app.mode"]["value"] == "blue" and rows["app.mode"]["result"] == "PENDING"
    assert rows["app.token"]["value"] == "" and rows["app.token"]["logged"] is False
    assert SECRET not in str(body) and "unlogged-value" not in str(body)


def test_the_log_needs_view_vmmessage(vm_with_messages):
    assert _client("view_virtualmachine").get(f"/api/v1/vms/{vm_with_messages.pk}/message-log/").status_code == 403


def test_the_vm_detail_shows_the_log_to_who_may_view_it(vm_with_messages):
    page = _client("view_virtualmachine", "view_vmmessage").get(f"/vms/{vm_with_messages.pk}/detail/")
    html = page.content.decode()
    assert "data-message-log" in html and "********" in html and "app.mode" in html and "blue" in html
    assert SECRET not in html and "unlogged-value" not in html
    html = _client("view_virtualmachine").get(f"/vms/{vm_with_messages.pk}/detail/").content.decode()
    assert "data-message-log" not in html
