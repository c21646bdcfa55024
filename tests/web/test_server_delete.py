"""The server page's Delete: shown with ``inventory.delete_server`` only; it queues the
server.delete job (which then shows in the jobs panel) or says why it cannot."""

import pytest
from django.contrib.auth.models import Permission

from ovmweb.inventory.choices import VmStatus
from ovmweb.inventory.models import Server
from ovmweb.jobs.models import Job
from tests.factories import ServerFactory, UserFactory, VirtualMachineFactory

pytestmark = pytest.mark.django_db


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="inventory", codename__in=codenames))


def test_delete_button_only_with_the_delete_permission(client):
    server = ServerFactory(name="hv-del")
    user = UserFactory()
    grant(user, "view_server")
    client.force_login(user)
    page = client.get(f"/servers/{server.pk}/").content.decode()
    assert "data-server-delete" not in page and f"/servers/{server.pk}/delete/" not in page
    assert client.post(f"/servers/{server.pk}/delete/").status_code == 403
    grant(user, "delete_server")
    page = client.get(f"/servers/{server.pk}/").content.decode()
    assert f'action="/servers/{server.pk}/delete/"' in page
    assert 'data-confirm="Delete server hv-del?' in page


def test_post_queues_the_job_shown_in_the_jobs_panel(admin_client):
    server = ServerFactory(name="hv-gone")
    response = admin_client.post(f"/servers/{server.pk}/delete/", follow=True)
    assert response.redirect_chain[-1][0] == "/servers/"
    job = Job.objects.get(operation="server.delete")
    assert job.params == {"server_id": server.pk}
    html = response.content.decode()
    assert f"Deletion of server hv-gone queued as job #{job.pk}." in html
    assert f"/jobs/{job.pk}/" in html  # the jobs panel lists it
    assert Server.objects.filter(pk=server.pk).exists()  # until the job runs


def test_refusal_is_a_message_on_the_server_page(admin_client):
    server = ServerFactory()
    VirtualMachineFactory(name="still-up", server=server, server_pool=server.server_pool, status=VmStatus.RUNNING)
    response = admin_client.post(f"/servers/{server.pk}/delete/", follow=True)
    assert response.redirect_chain[-1][0] == f"/servers/{server.pk}/"
    assert "still-up" in response.content.decode()
    assert not Job.objects.exists()


def test_get_is_not_allowed(admin_client):
    server = ServerFactory()
    assert admin_client.get(f"/servers/{server.pk}/delete/").status_code == 405
    assert not Job.objects.exists()
