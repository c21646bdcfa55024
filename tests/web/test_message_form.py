"""The Send Messages page: values are typed into password inputs, and a hidden value sent
back with an error elsewhere on the page is not in the answer."""

import re

import pytest

from ovmweb.inventory.choices import VmStatus
from ovmweb.jobs.models import Job
from tests.factories import RepositoryFactory, ServerPoolFactory, VirtualMachineFactory

pytestmark = pytest.mark.django_db

SECRET = "Hidden-Root-Pw-7c1d"


@pytest.fixture
def vm():
    pool = ServerPoolFactory()
    return VirtualMachineFactory(
        server_pool=pool, repository=RepositoryFactory(server_pools=[pool]), status=VmStatus.RUNNING
    )


def form_data(rows, total=2):
    data = {"msg-TOTAL_FORMS": str(total), "msg-INITIAL_FORMS": "0", "msg-MIN_NUM_FORMS": "0"}
    data["msg-MAX_NUM_FORMS"] = "100"
    for i in range(total):
        data[f"msg-{i}-log"] = "on"
    for i, row in enumerate(rows):
        data.update({f"msg-{i}-{k}": v for k, v in row.items()})
    return data


def value_inputs(html: str) -> list[str]:
    return re.findall(r'<input[^>]*name="msg-\d+-value"[^>]*>', html)


def test_values_are_typed_into_password_inputs(admin_client, vm):
    html = admin_client.get(f"/vms/{vm.pk}/messages/").content.decode()
    inputs = value_inputs(html)
    assert inputs and all('type="password"' in tag for tag in inputs)


@pytest.mark.parametrize(
    "other",
    [
        {"key": "bad key", "value": "x"},  # the service refuses the key
        {"key": "big", "value": "x" * 2000},  # over the logged limit
        {"key": "k" * 300, "value": "x"},  # the form refuses the length
    ],
)
def test_a_hidden_value_is_not_rendered_back(admin_client, vm, other):
    data = form_data([{"key": "com.oracle.linux.root-password", "value": SECRET, "hidden": "on"}, other])
    response = admin_client.post(f"/vms/{vm.pk}/messages/", data)
    html = response.content.decode()
    assert response.status_code == 200 and not Job.objects.exists()  # it failed, and came back
    assert SECRET not in html
    # A value not hidden is given back, so it need not be typed again.
    assert 'value="x' in html


def test_a_bad_key_is_a_row_error(admin_client, vm):
    response = admin_client.post(f"/vms/{vm.pk}/messages/", form_data([{"key": "../x", "value": "v"}]))
    assert response.status_code == 200 and "letters, digits" in response.content.decode()
    assert not Job.objects.exists()
