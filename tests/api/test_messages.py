"""Guest messages through the API: an unsafe key is a 400 field error and queues nothing."""

import pytest

from ovmweb.inventory.choices import VmStatus
from ovmweb.jobs.models import Job
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("key", ["../x", "a b", "a\nb", ""])
def test_unsafe_key_is_a_field_error(api, key):
    vm = f.VirtualMachineFactory(status=VmStatus.RUNNING, server=f.ServerFactory())
    body = {"messages": [{"key": "hostname", "value": "web1"}, {"key": key, "value": "v"}]}
    response = api.post(f"/api/v1/vms/{vm.pk}/messages/", body, format="json")
    assert response.status_code == 400
    errors = response.json()
    # The service's rule (messages[i].key), or the serializer's for an empty key: row 1's key either way.
    assert errors.get("messages[1].key") or errors["messages"]["1"]["key"]
    assert not Job.objects.exists()
