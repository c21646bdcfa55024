"""The repository's disk tab offers Flatten for a thin clone, and the form queues disk.flatten
(the job itself is tested in tests/inventory/test_thin_bases.py and on real QEMU)."""

import pytest

from ovmweb.jobs.models import Job
from tests import factories as f

pytestmark = pytest.mark.django_db


def test_a_thin_clone_is_flattened_from_the_repository_page(admin_client):
    repo = f.RepositoryFactory()
    base = f.VirtualDiskFactory(repository=repo, name="frozen", thin_base=True)
    clone = f.VirtualDiskFactory(repository=repo, name="child", backing_disk=base)
    page = admin_client.get(f"/repositories/{repo.pk}/?tab=disks").content.decode()
    assert f'action="/disks/{clone.pk}/flatten/"' in page
    assert f'action="/disks/{base.pk}/flatten/"' not in page  # a base stands on nothing
    assert "base of thin clones (read-only)" in page
    response = admin_client.post(f"/disks/{clone.pk}/flatten/")
    assert response.status_code == 302 and response["Location"].endswith("?tab=disks")
    job = Job.objects.get(operation="disk.flatten")
    assert job.params["disk_id"] == clone.pk


def test_a_disk_on_no_base_is_not_flattened_and_the_page_says_why(admin_client):
    disk = f.VirtualDiskFactory(name="plain")
    response = admin_client.post(f"/disks/{disk.pk}/flatten/", follow=True)
    assert "stands on no base" in response.content.decode()
    assert not Job.objects.filter(operation="disk.flatten").exists()
