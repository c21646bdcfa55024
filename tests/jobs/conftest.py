"""Operations used only by the job tests, registered like real ones."""

from __future__ import annotations

import threading

import pytest

from ovmweb.jobs.registry import JobContext, operation

# Steps of "test.steps" block on this event when a test wants to act between steps.
step_gate = threading.Event()
step_reached = threading.Event()


@operation("test.noop")
def noop(ctx: JobContext, **params) -> dict:
    ctx.log("noop ran")
    return {"echo": params}


@operation("test.fail")
def fail(ctx: JobContext, message: str = "boom") -> None:
    ctx.progress(30, "about to fail")
    raise RuntimeError(message)


@operation("test.steps")
def steps(ctx: JobContext, count: int = 3, wait: bool = False) -> dict:
    done = 0
    for i in range(count):
        ctx.check_abort()
        ctx.progress(int(100 * i / count), f"step {i + 1} of {count}")
        if wait and i == 0:
            step_reached.set()
            step_gate.wait(timeout=30)
        done += 1
    ctx.check_abort()
    return {"steps": done}


@operation("test.parent")
def parent(ctx: JobContext, children: int = 2, child_op: str = "test.noop") -> dict:
    for i in range(children):
        ctx.submit_child(operation=child_op, summary=f"child {i}", target=ctx.target, params={})
    return {"children": children}


@pytest.fixture(autouse=True)
def _reset_gates():
    step_gate.clear()
    step_reached.clear()
    yield
    step_gate.set()


@pytest.fixture
def vm(db):
    from tests.factories import VirtualMachineFactory

    return VirtualMachineFactory()


@pytest.fixture
def user(db):
    from tests.factories import UserFactory

    return UserFactory()
