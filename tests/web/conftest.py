import pytest

from tests.factories import SuperUserFactory


@pytest.fixture
def admin(db):
    return SuperUserFactory(username="ui-admin")


@pytest.fixture
def admin_client(client, admin):
    client.force_login(admin)
    return client
