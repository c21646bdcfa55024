"""The REST API of maintenance and pool policies."""

import pytest
from rest_framework.test import APIClient

from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(admin_user):
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


def test_server_maintenance_in_and_out(api):
    server = f.ServerFactory()
    response = api.post(f"/api/v1/servers/{server.pk}/maintenance/", {"on": True}, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["operation"] == "server.evacuate"
    assert api.get(f"/api/v1/servers/{server.pk}/").json()["status"] == "MAINTENANCE"
    again = api.post(f"/api/v1/servers/{server.pk}/maintenance/", {"on": True}, format="json")
    assert again.status_code == 409
    out = api.post(f"/api/v1/servers/{server.pk}/maintenance/", {"on": False}, format="json")
    assert out.status_code == 200 and out.json()["status"] == "RUNNING"
    assert api.post(f"/api/v1/servers/{server.pk}/maintenance/", {"on": 1, "x": 2}, format="json").status_code == 400


def test_pool_policies_and_ha_warning(api):
    pool = f.ServerPoolFactory()
    f.ServerFactory(server_pool=pool, name="no-leases", disk_leases=False)
    got = api.get(f"/api/v1/server-pools/{pool.pk}/policies/").json()
    assert got["drs_enabled"] is False and got["dpm_enabled"] is False and "no-leases" in got["ha_warning"]
    response = api.post(
        f"/api/v1/server-pools/{pool.pk}/policies/",
        {"drs_enabled": True, "drs_threshold_percent": 70, "drs_period_s": 120},
        format="json",
    )
    assert response.status_code == 200, response.content
    pool.refresh_from_db()
    assert (pool.drs_enabled, pool.drs_threshold_percent, pool.drs_period_s) == (True, 70, 120)
    bad = api.post(f"/api/v1/server-pools/{pool.pk}/policies/", {"drs_threshold_percent": 500}, format="json")
    assert bad.status_code == 400
