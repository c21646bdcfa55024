"""A console session through the real consumer leaves one record: start, end, bytes each way."""

from __future__ import annotations

import os

import pytest
from asgiref.sync import async_to_sync

from ovmweb.audit.models import AuditAction, AuditRecord
from tests.consoles import ws
from tests.consoles.conftest import (  # noqa: F401  (fixtures)
    fresh_channel_layer,
    local_server,
    make_target,
    operator,
    running_vm,
    viewer,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _session(user, vm, kind, frames):
    comm = ws.communicator(f"/ws/console/{kind}/{vm.pk}/?ticket={ws.issue(user, vm, kind)}", ws.headers(user))

    async def run():
        assert (await comm.connect())[0]
        received = 0
        for frame in frames:
            await comm.send_to(bytes_data=frame)
        while received < sum(map(len, frames)):
            received += len(await comm.receive_from(timeout=10))
        await comm.disconnect()
        return received

    return async_to_sync(run)()


def test_an_interactive_session_is_recorded_with_its_bytes(operator, local_server, running_vm, make_target):  # noqa: F811
    vm = running_vm(local_server, make_target("echo").port, name="echo-vm")
    frames = [os.urandom(n) for n in (10, 4096, 70_000)]
    received = _session(operator, vm, "serial", frames)
    (row,) = AuditRecord.objects.filter(action=AuditAction.CONSOLE)
    assert (row.user, row.object_type, row.object_id, row.object_repr) == (
        operator,
        "inventory.virtualmachine",
        str(vm.pk),
        "echo-vm",
    )
    assert row.detail == {"kind": "serial", "read_only": False} and row.outcome == "interactive"
    assert row.ended_at is not None and row.ended_at >= row.created_at
    assert row.bytes_to_console == sum(map(len, frames))
    assert row.bytes_from_console == received == row.bytes_to_console


def test_a_refused_console_leaves_no_record(viewer, operator, local_server, running_vm, make_target):  # noqa: F811
    vm = running_vm(local_server, make_target("echo").port)
    comm = ws.communicator(f"/ws/console/serial/{vm.pk}/?ticket=not-a-ticket", ws.headers(operator))

    async def run():
        return (await comm.connect())[0]

    assert async_to_sync(run)() is False
    assert not AuditRecord.objects.filter(action=AuditAction.CONSOLE).exists()
