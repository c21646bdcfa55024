"""The live feed by role: a role on a pool sends what is about that pool's objects, and only that."""

import pytest
from channels.layers import get_channel_layer

from ovmweb.accounts.models import Role, RoleAssignment
from tests import factories as f
from tests.web.test_live_permissions import _communicator, _run, fresh_channel_layer  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


async def _received(user, messages, end: dict):
    comm = _communicator(user)
    connected, _ = await comm.connect()
    assert connected
    for topic, payload in [*messages, ("vm", end)]:
        await get_channel_layer().group_send("live", {"type": "live.update", "topic": topic, "payload": payload})
    seen = []
    while True:
        message = await comm.receive_json_from(timeout=5)
        if message["payload"] == end:
            break
        seen.append((message["topic"], message["payload"]["id"]))
    await comm.disconnect()
    return seen


@pytest.mark.parametrize("role", Role.values)
def test_a_role_on_one_pool_hears_about_that_pool_only(role):
    a, b = f.ServerPoolFactory(), f.ServerPoolFactory()
    server_a, server_b = f.ServerFactory(server_pool=a), f.ServerFactory(server_pool=b)
    vm_a, vm_b = f.VirtualMachineFactory(server_pool=a), f.VirtualMachineFactory(server_pool=b)
    user = f.UserFactory()
    RoleAssignment.objects.create(role=role, user=user, server_pool=a)
    vm, srv = "inventory.virtualmachine", "inventory.server"
    messages = [
        ("vm", {"id": vm_a.pk, "server_pool_id": a.pk}),
        ("vm", {"id": vm_b.pk, "server_pool_id": b.pk}),
        ("vm", {"id": vm_b.pk, "vnics_changed": True}),  # no pool in the payload: looked up
        ("server", {"id": server_a.pk}),
        ("server", {"id": server_b.pk}),
        ("repository", {"id": 1}),  # no pool: estate-wide roles only
        ("job", {"id": 11, "target_type": vm, "target_id": vm_a.pk, "user_id": None}),
        ("job", {"id": 12, "target_type": vm, "target_id": vm_b.pk, "user_id": None}),
        ("job", {"id": 13, "target_type": vm, "target_id": vm_b.pk, "user_id": user.pk}),  # the user's own
        ("job", {"id": 14, "target_type": None, "target_id": None, "user_id": None}),
        ("event", {"id": 21, "object_type": srv, "object_id": server_a.pk}),
        ("event", {"id": 22, "object_type": srv, "object_id": server_b.pk}),
    ]
    seen = _run(_received(user, messages, {"id": -1, "server_pool_id": a.pk}))
    assert seen == [("vm", vm_a.pk), ("server", server_a.pk), ("job", 11), ("job", 13), ("event", 21)]


def test_an_estate_wide_viewer_hears_everything():
    user = f.UserFactory()
    RoleAssignment.objects.create(role=Role.VIEWER, user=user, server_pool=None)
    messages = [("vm", {"id": 5, "server_pool_id": 99}), ("repository", {"id": 1}), ("job", {"id": 7, "user_id": None})]
    seen = _run(_received(user, messages, {"id": -1}))
    assert seen == [("vm", 5), ("repository", 1), ("job", 7)]
