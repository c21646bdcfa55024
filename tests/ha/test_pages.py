"""The pages: a server's maintenance button and disk leases, a pool's HA warning and policies form."""

import pytest

from tests import factories as f

pytestmark = pytest.mark.django_db


def test_server_toolbar_maintenance_and_leases(admin_client):
    server = f.ServerFactory(disk_leases=False)
    page = admin_client.get(f"/servers/{server.pk}/").content.decode()
    assert 'id="server-maintenance"' in page and "Maintenance mode" in page and "HA cannot be enabled" in page
    assert f"/pools/{server.server_pool_id}/policies/" in page
    response = admin_client.post(f"/servers/{server.pk}/maintenance/", {"on": "1"})
    assert response.status_code == 302
    server.refresh_from_db()
    assert server.status == "MAINTENANCE"
    assert "End maintenance" in admin_client.get(f"/servers/{server.pk}/").content.decode()
    admin_client.post(f"/servers/{server.pk}/maintenance/", {"on": "0"})
    server.refresh_from_db()
    assert server.status == "RUNNING"


def test_pool_page_warns_and_sets_policies(admin_client):
    pool = f.ServerPoolFactory()
    f.ServerFactory(server_pool=pool, name="old-one", disk_leases=False)
    page = admin_client.get(f"/pools/{pool.pk}/policies/").content.decode()
    assert 'id="ha-warning"' in page and "old-one" in page and 'id="policies-form"' in page
    response = admin_client.post(
        f"/pools/{pool.pk}/policies/",
        {"drs_enabled": "on", "drs_threshold_percent": "70", "drs_period_s": "60", "dpm_enabled": "on"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    pool.refresh_from_db()
    assert (pool.drs_enabled, pool.drs_threshold_percent, pool.drs_period_s, pool.dpm_enabled) == (True, 70, 60, True)
    page = admin_client.get(f"/pools/{pool.pk}/policies/").content.decode()
    assert "above 70% CPU load or memory for 60 s" in page and "IPMI" in page
    bad = admin_client.post(f"/pools/{pool.pk}/policies/", {"drs_threshold_percent": "1", "drs_period_s": "60"})
    assert bad.status_code == 200 and "policies-form" in bad.content.decode()
