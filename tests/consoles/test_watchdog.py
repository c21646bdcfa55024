"""The console watchdog: data waiting, no progress for its stall time -> logged with both sides, recovered."""

from __future__ import annotations

import asyncio
import logging

import pytest
from asgiref.sync import async_to_sync

from ovmweb.consoles import consumers, watchdog
from tests.consoles import ws


class FakeSession:
    def __init__(self):
        self.moved = 0
        self.waiting = "pump paused with the server's buffer drained"
        self.recovered = 0
        self.closed = 0

    def progress(self):
        return (self.moved,)

    def waiting_for(self):
        return self.waiting

    def describe(self):
        return {"browser_side": {"paused": True}, "console_side": {"data_ready": True}}

    def recover(self):
        self.recovered += 1

    def give_up(self):
        self.closed += 1


class Clock:
    now = 100.0

    def __call__(self):
        return self.now


def test_stall_is_logged_with_both_sides_then_recovered(caplog):
    session, clock = FakeSession(), Clock()
    dog = watchdog.Watchdog(session, name="vnc of VM 1", clock=clock)
    clock.now += 4.9
    assert dog.check() is None and session.recovered == 0
    clock.now += 0.2
    with caplog.at_level(logging.WARNING, logger="ovmweb.consoles.watchdog"):
        assert dog.check() == "recovered"
    assert session.recovered == 1 and dog.stalls == 1
    assert "browser_side" in caplog.text and "console_side" in caplog.text and "buffer drained" in caplog.text
    # Moving again ends the episode: nothing more happens.
    session.moved += 1
    clock.now += 10
    assert dog.check() is None and session.closed == 0


def test_a_session_that_stays_stalled_after_recovery_is_closed():
    session, clock = FakeSession(), Clock()
    dog = watchdog.Watchdog(session, name="serial of VM 1", clock=clock)
    clock.now += 5
    assert dog.check() == "recovered"
    clock.now += 5
    assert dog.check() == "closed"
    assert session.closed == 1


def test_nothing_waiting_is_no_stall():
    """An idle console (or a browser that does not read: no resume is owed) is left alone."""
    session, clock = FakeSession(), Clock()
    session.waiting = None
    dog = watchdog.Watchdog(session, name="vnc of VM 1", clock=clock)
    clock.now += 60
    assert dog.check() is None and session.recovered == 0


@pytest.mark.django_db(transaction=True)
def test_consumer_recovers_a_pump_that_lost_its_wakeup(operator, local_server, running_vm, make_target, monkeypatch):
    """The pump parks on the console's fd; the wakeup is lost; the watchdog sees data unread and wakes it."""
    monkeypatch.setattr(consumers, "CHECK_INTERVAL", 0.05)
    monkeypatch.setattr(watchdog, "STALL_SECONDS", 0.2)
    sessions = []
    real = consumers.Watchdog

    def capture(session, **kwargs):
        sessions.append(session)
        return real(session, stall_seconds=0.2, **kwargs)

    monkeypatch.setattr(consumers, "Watchdog", capture)
    vm = running_vm(local_server, make_target("echo").port)
    comm = ws.communicator(f"/ws/console/vnc/{vm.pk}/?ticket={ws.issue(operator, vm, 'vnc')}", ws.headers(operator))

    async def run():
        assert (await comm.connect())[0]
        consumer = sessions[0]
        while not consumer.stream.waiting:
            await asyncio.sleep(0.01)
        # Lose the wakeup: the reader callback is gone while the pump stays parked.
        asyncio.get_running_loop().remove_reader(consumer.stream._fd)
        await comm.send_to(bytes_data=b"hello")
        received = await comm.receive_from(timeout=10)
        await comm.disconnect()
        return received, consumer.watchdog.stalls

    received, stalls = async_to_sync(run)()
    assert received == b"hello"
    assert stalls == 1


def test_a_slow_session_that_keeps_moving_is_not_a_stall():
    """A paste into a slow serial console: a write stays pending for minutes, but the window moves."""
    session, clock = FakeSession(), Clock()
    session.waiting = "write to the console pending with its window open"
    dog = watchdog.Watchdog(session, name="serial of VM 1", clock=clock)
    for _ in range(60):
        clock.now += 1
        session.moved += 1
        assert dog.check() is None
    assert session.recovered == 0 and session.closed == 0
