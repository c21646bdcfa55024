"""The VM list offers bulk actions: each row a checkbox, one form naming the actions that
the API's POST /api/v1/vms/bulk/ takes (tests/api/test_vm_bulk.py runs those)."""

import re

import pytest

from tests import factories as f

pytestmark = pytest.mark.django_db


def test_the_vm_list_checks_several_vms_for_one_action(admin_client):
    vms = [f.VirtualMachineFactory() for _ in range(3)]
    page = admin_client.get("/vms/").content.decode()
    boxes = re.findall(r'<input type="checkbox" class="bulk-select" value="(\d+)"', page)
    assert sorted(map(int, boxes)) == sorted(vm.pk for vm in vms)
    form = re.search(r'<form id="vm-bulk".*?</form>', page, re.S).group(0)
    assert 'data-url="/api/v1/vms/bulk/"' in form
    assert re.findall(r'<option value="(\w+)">', form) == ["start", "stop", "restart", "kill", "migrate", "delete"]
    assert "web/bulk.js" in page
    # A row re-rendered alone (live updates) keeps its checkbox.
    row = admin_client.get(f"/vms/{vms[0].pk}/row/").content.decode()
    assert f'class="bulk-select" value="{vms[0].pk}"' in row
