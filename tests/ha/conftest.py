import pytest


@pytest.fixture
def libvirt_test_driver(settings):
    """Every server reached through libvirt's in-process test:///default driver (as in tests/inventory)."""
    from ovmweb.hypervisor.connections import close_all

    settings.OVMWEB_HYPERVISOR_URI = "test:///default"
    yield
    close_all()
