"""Messages (seed 7.10) to the tiny guest's built-in agent (guest/ovmweb-guest-agent), on
real QEMU: each value is read back inside the guest; the job is DELIVERED only on the
agent's acknowledgement and fails with a clear error when no agent listens."""

import hashlib
import random
import string

import pytest

from ovmweb.inventory import rules
from ovmweb.inventory.models import VmMessage
from ovmweb.inventory.services.messages import vm_send_messages
from ovmweb.jobs.models import Job
from ovmweb.jobs.testing import run_pending_jobs

from .conftest import started, tiny_vm
from .guest_console import GuestConsole

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

DIR = "/run/ovmweb/messages"
LOG = "/var/log/ovmweb-messages.log"


def _value(size: int) -> str:
    return "".join(random.choices(string.ascii_letters + string.digits, k=size))  # nosec B311 - test data


@pytest.fixture
def running_guest(estate):
    vm = started(estate, tiny_vm(estate, "msg"))
    console = GuestConsole(vm.serial_port)
    console.wait_for_shell()
    yield vm, console
    console.close()


def _send(vm, user, messages) -> list[Job]:
    jobs = vm_send_messages(vm=vm, user=user, messages=messages)
    run_pending_jobs()
    for job in jobs:
        job.refresh_from_db()
    return jobs


def test_values_reach_the_guest_acknowledged_and_root_password_last(estate, running_guest):
    vm, console = running_guest
    messages = [
        {"key": "com.oracle.linux.root-password", "value": "Secret-" + _value(12), "hidden": True},
        {"key": "com.example.logged", "value": "logged " + _value(20), "log": True},
        {"key": "com.example.unlogged", "value": "unlogged-" + _value(20), "log": False},
        {"key": "com.example.max-logged", "value": _value(rules.MESSAGE_VALUE_MAX_BYTES_LOGGED), "log": True},
        {"key": "com.example.max", "value": _value(rules.MESSAGE_VALUE_MAX_BYTES_UNLOGGED), "log": False},
    ]
    jobs = _send(vm, estate["user"], messages)
    assert [(j.status, j.error) for j in jobs] == [("SUCCESS", "")] * len(messages)
    # Submitted (and so run) in order, root-password last whatever its place in the request.
    assert [j.params["key"] for j in sorted(jobs, key=lambda j: j.pk)][-1] == "com.oracle.linux.root-password"
    results = dict(VmMessage.objects.filter(vm=vm).values_list("key", "result"))
    assert set(results.values()) == {"DELIVERED"}, results

    for message in messages:
        key, value = message["key"], message["value"]
        if len(value) > 200:  # the serial console is slow: compare a digest
            assert console.run(f"md5sum < {DIR}/{key}").split()[0] == hashlib.md5(value.encode()).hexdigest(), key  # nosec B324
        else:
            assert console.run(f"cat {DIR}/{key}") == value, key
        assert console.run(f"stat -c %a {DIR}/{key}") == "600", key
    # The agent wrote root-password last; no temporary file is left behind.
    newest = console.run(f"stat -c '%y %n' {DIR}/* | sort | tail -n 1")
    assert newest.endswith(f"{DIR}/com.oracle.linux.root-password"), newest
    assert console.run(f"ls -a {DIR} | grep -c '^\\.[^.]'; true") == "0"
    log = console.run(f"cat {LOG}")
    assert messages[1]["value"] in log and messages[3]["value"] in log
    for secret in (messages[0], messages[2], messages[4]):
        assert secret["value"] not in log, secret["key"]


def test_no_agent_listening_fails_the_job_with_the_timeout(estate, running_guest):
    vm, console = running_guest
    agents = "ps | grep '[o]vmweb-guest-agent'"
    assert console.run(agents), "the tiny guest runs its agent"
    console.run(f"kill $({agents} | awk '{{print $1}}'); sleep 1")
    assert console.run(f"{agents}; true") == ""
    (job,) = _send(vm, estate["user"], [{"key": "com.example.nobody", "value": "lost", "log": True}])
    assert job.status == "FAILURE"
    assert "no guest agent answered" in job.error and "within" in job.error, job.error
    assert VmMessage.objects.get(job=job).result == "FAILED"
    assert console.run(f"ls {DIR}/com.example.nobody 2>&1; true").endswith("No such file or directory")
