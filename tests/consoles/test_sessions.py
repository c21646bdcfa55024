"""Console slots: per user, per VM, and the per-VM slots view-only sessions may not take."""

import pytest

from ovmweb.consoles import services


@pytest.fixture
def caps(settings):
    settings.OVMWEB_CONSOLE_MAX_PER_USER = 100
    settings.OVMWEB_CONSOLE_MAX_PER_VM = 4
    settings.OVMWEB_CONSOLE_INTERACTIVE_RESERVED_PER_VM = 1
    handles = []
    yield handles
    for handle in handles:
        services.session_close(handle)


def test_viewers_cannot_fill_a_vms_console_slots(caps):
    # Three viewers (distinct users) take the three slots open to them...
    caps += [services.session_open(user_id=user, vm_id=7, read_only=True) for user in (1, 2, 3)]
    # ...a fourth is refused, although the VM has a slot left,
    with pytest.raises(services.ConsoleLimitReached):
        services.session_open(user_id=4, vm_id=7, read_only=True)
    with pytest.raises(services.ConsoleLimitReached):
        services.check_limits(user_id=4, vm_id=7, read_only=True)
    # ...which is there for a user who may type.
    caps.append(services.session_open(user_id=5, vm_id=7, read_only=False))
    with pytest.raises(services.ConsoleLimitReached):
        services.session_open(user_id=6, vm_id=7, read_only=False)


def test_interactive_sessions_count_against_the_viewers_share(caps):
    caps += [services.session_open(user_id=user, vm_id=8) for user in (1, 2, 3)]
    with pytest.raises(services.ConsoleLimitReached):
        services.session_open(user_id=4, vm_id=8, read_only=True)
    services.session_close(caps.pop())
    caps.append(services.session_open(user_id=4, vm_id=8, read_only=True))


def test_a_closed_session_frees_its_slot(caps):
    handle = services.session_open(user_id=1, vm_id=9, read_only=True)
    services.session_close(handle)
    caps += [services.session_open(user_id=user, vm_id=9, read_only=True) for user in (2, 3, 4)]
