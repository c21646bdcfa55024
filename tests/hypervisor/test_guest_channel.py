"""The host side of guest messages: delivered only on the agent's acknowledgement, a clear
failure when no agent answers, and the log flag only for logged keys."""

import pytest

from ovmweb.errors import OperationFailed
from ovmweb.hypervisor.base import AgentTimeout
from ovmweb.hypervisor.libvirt.messages import _Channel, _exchange

from .test_libvirt_parts import Agent, FakeStream


class SilentAfterPing(Agent):
    """Answers the ping, then never acknowledges a value."""

    def send(self, data):
        if data.startswith(b"PING"):
            return super().send(data)
        self.sent.append(bytes(data))
        return len(data)


def test_no_agent_answering_the_ping_fails_clearly_and_sets_nothing():
    stream = FakeStream([])
    with pytest.raises(OperationFailed, match=r"no guest agent answered .* within 0.05 s") as exc:
        _exchange(_Channel(stream, timeout=0.05), [("k", "v")])
    assert not isinstance(exc.value, AgentTimeout)  # nothing was set: FAILED, not UNKNOWN
    assert [line.split()[0] for line in stream.sent] == [b"PING"]


def test_an_unacknowledged_value_is_an_agent_timeout():
    with pytest.raises(AgentTimeout, match="did not acknowledge k within"):
        _exchange(_Channel(SilentAfterPing(), timeout=0.05), [("k", "v")])


class Recording(Agent):
    def send(self, data):
        self.sent.append(bytes(data))
        return super().send(data)


def test_only_logged_keys_carry_the_log_flag():
    stream = Recording()
    _exchange(_Channel(stream, timeout=2), [("shown", "1"), ("secret", "2")], logged={"shown"})
    sets = [line.decode().split() for line in stream.sent if line.startswith(b"SET")]
    assert [(words[2], words[4:]) for words in sets] == [("shown", ["log"]), ("secret", [])]
