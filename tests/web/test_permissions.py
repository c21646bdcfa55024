"""Object permissions on the non-VM pages: without ``inventory.view_*`` a page answers 403,
writes need add/change/delete; superusers see everything."""

import pytest
from django.contrib.auth.models import Permission

from ovmweb.jobs.models import Job
from tests.factories import NetworkFactory, RepositoryFactory, ServerFactory, ServerPoolFactory, UserFactory

pytestmark = pytest.mark.django_db


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="inventory", codename__in=codenames))
    # Permissions are cached on the user object: the client's request loads a fresh one.


@pytest.fixture
def objects():
    pool = ServerPoolFactory()
    return {
        "server": ServerFactory(server_pool=pool),
        "repo": RepositoryFactory(server_pools=[pool]),
        "network": NetworkFactory(),
        "pool": pool,
    }


def read_pages(o):
    return [
        ("/servers/", "view_server"),
        (f"/servers/{o['server'].pk}/", "view_server"),
        ("/nav/", "view_server"),
        (f"/pools/{o['pool'].pk}/", "view_serverpool"),
        ("/repositories/", "view_repository"),
        (f"/repositories/{o['repo'].pk}/", "view_repository"),
        ("/networks/", "view_network"),
        ("/servers/discover/", "add_server"),
        ("/pools/new/", "add_serverpool"),
        (f"/repositories/{o['repo'].pk}/disks/new/", "add_virtualdisk"),
    ]


def write_posts(o):
    return [
        ("/servers/discover/host-key/", {"hostname": "127.0.0.1"}),
        (f"/servers/{o['server'].pk}/inbound-lock/", {"locked": "1"}),
        (f"/repositories/{o['repo'].pk}/refresh/", {}),
        (f"/repositories/{o['repo'].pk}/isos/import/", {"url": "https://x/a.iso"}),
        (f"/repositories/{o['repo'].pk}/appliances/import/", {"url": "https://x/a.ova"}),
        (f"/networks/{o['network'].pk}/delete/", {}),
        ("/repositories/", {"name": "r"}),
        ("/networks/", {"form": "network", "name": "n"}),
        ("/networks/", {"form": "mac", "start": "00:21:f6:00:00:00"}),
    ]


def test_user_without_permissions_gets_403_everywhere(client, objects):
    user = UserFactory()
    client.force_login(user)
    for url, _perm in read_pages(objects):
        assert client.get(url).status_code == 403, url
    for url, data in write_posts(objects):
        assert client.post(url, data).status_code == 403, url
    assert not Job.objects.exists()
    # The VM perspective too: it needs view permission on VMs.
    page = client.get("/vms/")
    assert page.status_code == 403 and objects["server"].name not in page.content.decode()


def test_each_page_opens_with_its_own_permission(client, objects):
    user = UserFactory()
    client.force_login(user)
    granted = set()
    for url, perm in read_pages(objects):
        if perm not in granted:
            assert client.get(url).status_code == 403, url
        grant(user, perm)
        granted.add(perm)
        assert client.get(url).status_code in (200, 302), url


def test_view_permission_does_not_allow_writes(client, objects):
    user = UserFactory()
    grant(user, "view_server", "view_repository", "view_network")
    client.force_login(user)
    assert client.get("/servers/").status_code == 200
    assert client.post(f"/servers/{objects['server'].pk}/inbound-lock/", {"locked": "1"}).status_code == 403
    assert client.post("/repositories/", {"name": "r"}).status_code == 403
    assert client.post(f"/networks/{objects['network'].pk}/delete/").status_code == 403
    objects["server"].refresh_from_db()
    assert objects["server"].inbound_migration_lock is False


def test_superuser_sees_every_page(admin_client, objects):
    for url, _perm in read_pages(objects):
        assert admin_client.get(url).status_code in (200, 302), url  # a pool opens the VM perspective
    assert objects["server"].name in admin_client.get("/vms/").content.decode()
