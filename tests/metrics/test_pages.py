"""The graphs and sparklines on the pages, the uPlot library served from node_modules,
and the live feed's metrics topics reaching only who may view the objects."""

import pytest
from django.contrib.staticfiles import finders

from ovmweb.web.consumers import visible
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    client.force_login(f.SuperUserFactory())
    return client


def test_uplot_is_served_from_node_modules_like_novnc():
    assert finders.find("vendor/uplot/dist/uPlot.iife.min.js")
    assert finders.find("web/metrics.js")


def test_the_vm_table_has_a_sparkline_per_row_and_the_detail_a_graph_panel(admin_client):
    vm = f.VirtualMachineFactory()
    page = admin_client.get("/vms/").content.decode()
    assert f'data-spark-kind="vm" data-spark-id="{vm.pk}"' in page
    assert "vendor/uplot/dist/uPlot.iife.min.js" in page and "web/metrics.js" in page
    detail = admin_client.get(f"/vms/{vm.pk}/detail/").content.decode()
    assert f'data-metrics-url="/api/v1/vms/{vm.pk}/metrics/"' in detail
    assert 'data-metrics-range="day"' in detail and 'data-metrics-range="month"' in detail


def test_server_and_repository_pages_have_graphs(admin_client):
    server = f.ServerFactory()
    repository = f.RepositoryFactory()
    page = admin_client.get(f"/servers/{server.pk}/").content.decode()
    assert f'data-metrics-url="/api/v1/servers/{server.pk}/metrics/"' in page
    assert f'data-spark-kind="server" data-spark-id="{server.pk}"' in admin_client.get("/servers/").content.decode()
    page = admin_client.get(f"/repositories/{repository.pk}/").content.decode()
    assert f'data-metrics-url="/api/v1/repositories/{repository.pk}/metrics/"' in page


def test_metrics_rounds_reach_only_who_may_view_that_kind():
    actions = frozenset({"vm.view"})
    assert visible("metrics.vm", {"ts": 1}, user_id=1, actions=actions, labels=frozenset())
    assert not visible("metrics.repository", {"ts": 1}, user_id=1, actions=actions, labels=frozenset())
