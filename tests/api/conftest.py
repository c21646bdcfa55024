import pytest
from rest_framework.test import APIClient

from ovmweb.accounts.tokens import create_token
from tests.factories import RepositoryFactory, ServerPoolFactory, SuperUserFactory, UserFactory


@pytest.fixture
def superuser(db):
    return SuperUserFactory()


@pytest.fixture
def token(superuser):
    """The key of a new API token of ``superuser``."""
    return create_token(user=superuser)[1]


@pytest.fixture
def api(token):
    """An API client authenticated by token, as a script would be."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def plain_user(db):
    return UserFactory()


@pytest.fixture
def plain_api(plain_user):
    client = APIClient()
    client.force_authenticate(plain_user)
    return client


@pytest.fixture
def pool(db):
    return ServerPoolFactory()


@pytest.fixture
def repo(pool):
    """A shared repository presented to ``pool``."""
    return RepositoryFactory(server_pools=[pool])
