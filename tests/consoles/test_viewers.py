"""A second viewer watches the same console at once, and each sees who else is connected."""

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from tests.consoles import ws

pytestmark = pytest.mark.django_db(transaction=True)


def _open(user, vm):
    return ws.communicator(f"/ws/console/vnc/{vm.pk}/?ticket={ws.issue(user, vm, 'vnc')}", ws.headers(user))


def test_two_viewers_at_once_are_listed(client, operator, viewer, local_server, running_vm, make_target, settings):
    settings.OVMWEB_CONSOLE_INTERACTIVE_RESERVED_PER_VM = 0
    vm = running_vm(local_server, make_target("echo").port)
    first, second = _open(operator, vm), _open(viewer, vm)

    client.force_login(operator)
    viewers = sync_to_async(lambda: client.get(f"/api/v1/vms/{vm.pk}/console-viewers/").json())

    async def run():
        assert (await first.connect())[0]
        assert (await second.connect())[0]
        # The second viewer is not refused, nor is the first cut off by it.
        await first.send_to(bytes_data=b"ping")
        assert await first.receive_from(timeout=10) == b"ping"
        during = await viewers()
        await first.disconnect()
        await second.disconnect()
        return during, await viewers()

    during, after = async_to_sync(run)()
    assert during["viewers"] == [
        {"username": "operator", "read_only": False, "sessions": 1},
        {"username": "viewer", "read_only": True, "sessions": 1},
    ]
    assert after == {"viewers": []}


def test_viewers_of_a_vm_one_may_not_see_are_not_listed(client, stranger, local_server, running_vm, make_target):
    vm = running_vm(local_server, make_target("echo").port)
    client.force_login(stranger)
    assert client.get(f"/api/v1/vms/{vm.pk}/console-viewers/").status_code in (403, 404)
