"""A thin clone is flattened through the API, and a disk says whether it is a thin-clone base."""

import pytest

from ovmweb.jobs.models import Job
from tests import factories as f

pytestmark = pytest.mark.django_db


def test_flatten_queues_the_job_and_thin_base_is_shown(api):
    base = f.VirtualDiskFactory()
    base.thin_base = True
    base.save()
    clone = f.VirtualDiskFactory(repository=base.repository, backing_disk=base)
    shown = api.get(f"/api/v1/virtual-disks/{base.pk}/").json()
    assert (
        shown["thin_base"] is True and api.get(f"/api/v1/virtual-disks/{clone.pk}/").json()["backing_disk"] == base.pk
    )
    response = api.post(f"/api/v1/virtual-disks/{clone.pk}/flatten/", {}, format="json")
    assert response.status_code == 202, response.json()
    assert Job.objects.get(pk=response.json()["id"]).operation == "disk.flatten"
    # A standalone disk has nothing to flatten.
    refused = api.post(f"/api/v1/virtual-disks/{base.pk}/flatten/", {}, format="json")
    assert refused.status_code == 409 and "nothing to flatten" in refused.json()["detail"]
