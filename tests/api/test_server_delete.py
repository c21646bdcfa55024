"""DELETE /api/v1/servers/{id}/: the server.delete job, or 409 naming why not."""

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from ovmweb.inventory.choices import RepositoryKind, VmStatus
from ovmweb.inventory.models import Server
from ovmweb.jobs.models import Job
from tests import factories as f

pytestmark = pytest.mark.django_db


def test_delete_answers_202_with_the_job(api):
    server = f.ServerFactory()
    f.VirtualMachineFactory(server=server, server_pool=server.server_pool, status=VmStatus.STOPPED)
    response = api.delete(f"/api/v1/servers/{server.pk}/")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["operation"] == "server.delete" and body["status"] == "QUEUED"
    job = Job.objects.get(pk=body["id"])
    assert job.params == {"server_id": server.pk} and job.target_id == server.pk
    # The row goes only when the job has removed ovmweb's key from the server.
    assert Server.objects.filter(pk=server.pk).exists()


def test_delete_with_a_running_vm_is_409_naming_it(api):
    server = f.ServerFactory()
    f.VirtualMachineFactory(name="busy-vm", server=server, server_pool=server.server_pool, status=VmStatus.RUNNING)
    response = api.delete(f"/api/v1/servers/{server.pk}/")
    assert response.status_code == 409
    assert "busy-vm" in response.json()["detail"]
    assert not Job.objects.filter(operation="server.delete").exists()


def test_delete_with_a_local_repository_is_409(api):
    server = f.ServerFactory()
    f.RepositoryFactory(kind=RepositoryKind.LOCAL, server=server, server_pools=[])
    response = api.delete(f"/api/v1/servers/{server.pk}/")
    assert response.status_code == 409
    assert "local repositories" in response.json()["detail"]


def test_delete_needs_the_delete_permission(db):
    server = f.ServerFactory()
    user = f.UserFactory()
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="inventory", codename__in=["view_server", "change_server"])
    )
    client = APIClient()
    client.force_authenticate(user)
    assert client.get(f"/api/v1/servers/{server.pk}/").status_code == 200
    assert client.delete(f"/api/v1/servers/{server.pk}/").status_code == 403
    assert not Job.objects.exists()
    user.user_permissions.add(Permission.objects.get(content_type__app_label="inventory", codename="delete_server"))
    user = type(user).objects.get(pk=user.pk)  # permissions are cached on the instance
    client.force_authenticate(user)
    assert client.delete(f"/api/v1/servers/{server.pk}/").status_code == 202


def test_delete_unauthenticated_is_refused(db):
    server = f.ServerFactory()
    assert APIClient().delete(f"/api/v1/servers/{server.pk}/").status_code in (401, 403)
    assert not Job.objects.exists()


def test_delete_of_unknown_server_is_404(api):
    assert api.delete("/api/v1/servers/987654/").status_code == 404


def test_second_delete_while_the_first_is_queued_is_409(api):
    server = f.ServerFactory()
    assert api.delete(f"/api/v1/servers/{server.pk}/").status_code == 202
    again = api.delete(f"/api/v1/servers/{server.pk}/")
    assert again.status_code == 409, again.json()
    assert Job.objects.filter(operation="server.delete").count() == 1
