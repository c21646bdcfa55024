"""One request, several VMs (issue 13's bulk actions, seed 7.7): a parent job and a child
per VM, each permission-checked and made by the single-VM service; migrations serial."""

import pytest
from rest_framework.test import APIClient

from ovmweb.accounts.models import Role, RoleAssignment
from ovmweb.inventory.choices import VmStatus
from ovmweb.inventory.models import VirtualMachine
from ovmweb.jobs.models import Job
from ovmweb.jobs.runner import run_job
from ovmweb.jobs.testing import run_pending_jobs
from tests import factories as f

pytestmark = pytest.mark.django_db(transaction=True)


def bulk(client, **body):
    return client.post("/api/v1/vms/bulk/", body, format="json")


def test_bulk_delete_is_a_parent_with_a_child_per_vm(api):
    stopped = [f.VirtualMachineFactory(status=VmStatus.STOPPED) for _ in range(2)]
    running = f.VirtualMachineFactory(status=VmStatus.RUNNING, server=f.ServerFactory())
    response = bulk(api, action="delete", vms=[stopped[0].pk, running.pk, stopped[1].pk])
    assert response.status_code == 202, response.json()
    parent = Job.objects.get(pk=response.json()["id"])
    children = list(parent.children.order_by("pk"))
    assert parent.operation == "vm.bulk"
    assert [c.operation for c in children] == ["vm.delete", "vm.bulk_refused", "vm.delete"]
    assert [c.target_id for c in children] == [stopped[0].pk, running.pk, stopped[1].pk]
    run_pending_jobs()
    parent.refresh_from_db()
    # The stopped VMs are gone; the running one stays, and the parent says why.
    assert not VirtualMachine.objects.filter(pk__in=[vm.pk for vm in stopped]).exists()
    assert VirtualMachine.objects.filter(pk=running.pk).exists()
    assert parent.status == "FAILURE" and "stop it first" in parent.error, parent.error


def test_bulk_migrations_run_one_after_another(api):
    pool, other = f.ServerPoolFactory(), f.ServerPoolFactory()
    repo = f.RepositoryFactory(server_pools=[pool, other])
    vms = [f.VirtualMachineFactory(server_pool=pool, repository=repo) for _ in range(2)]
    response = bulk(api, action="migrate", vms=[vm.pk for vm in vms], target_pool=other.pk)
    assert response.status_code == 202, response.json()
    first, second = Job.objects.get(pk=response.json()["id"]).children.order_by("pk")
    assert second.params["after_job_id"] == first.pk and "after_job_id" not in first.params
    # The second waits for the first (it goes back to the queue), then runs.
    assert run_job(second.pk) == "DEFERRED"
    second.refresh_from_db()
    assert second.status == "QUEUED"
    assert run_job(first.pk) == "SUCCESS"
    assert run_job(second.pk) == "SUCCESS"
    run_pending_jobs()
    assert set(VirtualMachine.objects.values_list("server_pool_id", flat=True)) == {other.pk}
    assert Job.objects.get(operation="vm.bulk").status == "SUCCESS"


def test_each_vm_is_checked_against_the_users_role(api):
    a, b, c = f.ServerPoolFactory(), f.ServerPoolFactory(), f.ServerPoolFactory()
    vm_a, vm_b = f.VirtualMachineFactory(server_pool=a), f.VirtualMachineFactory(server_pool=b)
    vm_c = f.VirtualMachineFactory(server_pool=c)
    user = f.UserFactory()
    RoleAssignment.objects.create(role=Role.OPERATOR, user=user, server_pool=a)
    RoleAssignment.objects.create(role=Role.VIEWER, user=user, server_pool=b)
    client = APIClient()
    client.force_authenticate(user)
    # A pool without a role: its VM is a 404 (its name does not leak); a Viewer's: 403.
    assert bulk(client, action="start", vms=[vm_a.pk, vm_c.pk]).status_code == 404
    assert bulk(client, action="start", vms=[vm_a.pk, vm_b.pk]).status_code == 403
    assert not Job.objects.exists()
    assert bulk(client, action="start", vms=[vm_a.pk]).status_code == 202
    # Bad input: an unknown action, no VM, a VM twice.
    assert bulk(api, action="suspend", vms=[vm_a.pk]).status_code == 400
    assert bulk(api, action="start", vms=[]).status_code == 400
    assert bulk(api, action="kill", vms=[vm_b.pk, vm_b.pk]).status_code == 400
