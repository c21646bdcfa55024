"""Toolbar forms for clone, save as template, back up, move, export, messages and migrate:
enabled per state as the rules say, and every write goes through the services."""

import re

import pytest
from django.contrib.messages import get_messages

from ovmweb.inventory.choices import VmStatus
from ovmweb.inventory.models import VirtualMachine, VmMessage
from ovmweb.jobs.models import Job
from tests.factories import (
    RepositoryFactory,
    ServerFactory,
    ServerPoolFactory,
    VirtualDiskFactory,
    VirtualMachineFactory,
    VmDiskSlotFactory,
)

pytestmark = pytest.mark.django_db


def texts(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def pool():
    return ServerPoolFactory()


def make_vm(pool, status=VmStatus.STOPPED, **kw):
    repo = RepositoryFactory(server_pools=[pool])
    vm = VirtualMachineFactory(server_pool=pool, repository=repo, status=status, **kw)
    VmDiskSlotFactory(vm=vm, slot=0, virtual_disk=VirtualDiskFactory(repository=repo))
    return vm


def toolbar_state(client, vm) -> dict:
    html = client.get(f"/vms/toolbar/?vm={vm.pk}").content.decode()
    out = {}
    for m in re.finditer(r'<(a|button) class="btn"[^>]*data-form-action="(\w+)"', html):
        out[m.group(2)] = m.group(1) == "a"
    return out


@pytest.mark.parametrize(
    "status,enabled",
    [
        (VmStatus.RUNNING, {"migrate", "clone", "template", "backup", "messages"}),
        (VmStatus.STOPPED, {"migrate", "clone", "template", "backup", "move", "export"}),
        (VmStatus.TEMPLATE, {"clone", "backup", "move"}),
        (VmStatus.SUSPENDED, set()),
        (VmStatus.STOPPING, set()),
    ],
)
def test_toolbar_enables_form_actions_by_state(admin_client, pool, status, enabled):
    vm = make_vm(pool, status)
    state = toolbar_state(admin_client, vm)
    assert set(state) == {"migrate", "clone", "template", "backup", "move", "export", "messages"}
    assert {k for k, on in state.items() if on} == enabled


def test_clone_form_queues_clone_job(admin_client, pool):
    vm = make_vm(pool, name="web01")
    page = admin_client.get(f"/vms/{vm.pk}/clone/").content.decode()
    assert 'value="web01-clone"' in page
    response = admin_client.post(f"/vms/{vm.pk}/clone/", {"name": "web02"})
    assert response.status_code == 302
    job = Job.objects.get(operation="vm.clone")
    assert VirtualMachine.objects.get(pk=job.target_id).name == "web02"


def test_save_as_template_makes_a_template(admin_client, pool):
    vm = make_vm(pool, name="golden")
    page = admin_client.get(f"/vms/{vm.pk}/clone/?as_template=1").content.decode()
    assert "Save as Template" in page and 'name="as_template"' in page and "checked" in page
    admin_client.post(f"/vms/{vm.pk}/clone/?as_template=1", {"name": "golden-tpl", "as_template": "on"})
    assert VirtualMachine.objects.get(name="golden-tpl").status == VmStatus.TEMPLATE


def test_hot_clone_refusal_is_shown_on_the_form(admin_client, pool):
    vm = make_vm(pool, VmStatus.SUSPENDED)
    response = admin_client.post(f"/vms/{vm.pk}/clone/", {"name": "x"})
    assert response.status_code == 200 and "SUSPENDED" in response.content.decode()
    assert not Job.objects.exists()


def test_backup_form_names_the_copy_and_uses_the_chosen_repository(admin_client, pool):
    vm = make_vm(pool, name="db01")
    target = RepositoryFactory(server_pools=[pool], name="backups")
    page = admin_client.get(f"/vms/{vm.pk}/backup/").content.decode()
    assert "db01-backup-" in page
    admin_client.post(f"/vms/{vm.pk}/backup/", {"repository": target.pk})
    copy = VirtualMachine.objects.get(pk=Job.objects.get(operation="vm.clone").target_id)
    assert re.fullmatch(r"db01-backup-\d{8}T\d{6}Z", copy.name) and copy.repository == target


def test_move_needs_a_choice_and_a_stopped_vm(admin_client, pool):
    vm = make_vm(pool)
    target = RepositoryFactory(server_pools=[pool])
    response = admin_client.post(f"/vms/{vm.pk}/move/", {})
    assert response.status_code == 200 and "one of them" in response.content.decode()
    response = admin_client.post(f"/vms/{vm.pk}/move/", {"target_repository": target.pk})
    assert response.status_code == 302
    assert Job.objects.get(operation="vm.move").params["repository_id"] == target.pk
    running = make_vm(pool, VmStatus.RUNNING)
    response = admin_client.post(f"/vms/{running.pk}/move/", {"target_repository": target.pk})
    assert "stop it first" in response.content.decode()


def test_export_says_what_it_writes_and_queues_the_job(admin_client, pool):
    vm = make_vm(pool)
    page = admin_client.get(f"/vms/{vm.pk}/export/").content.decode()
    assert f"{vm.repository.path}/Assemblies/" in page and "OVA" in page and "streamOptimized VMDK" in page
    assert admin_client.post(f"/vms/{vm.pk}/export/").status_code == 302
    assert Job.objects.get(operation="vm.export").target_id == vm.pk


def msg_data(rows, total=4):
    data = {
        "msg-TOTAL_FORMS": str(total),
        "msg-INITIAL_FORMS": "0",
        "msg-MIN_NUM_FORMS": "0",
        "msg-MAX_NUM_FORMS": "100",
    }
    for i in range(total):
        data[f"msg-{i}-log"] = "on"  # the default, as the browser posts it
    for i, row in enumerate(rows):
        for k, v in row.items():
            if v is False:
                data.pop(f"msg-{i}-{k}", None)
            else:
                data[f"msg-{i}-{k}"] = v
    return data


def test_messages_one_job_each_hidden_value_never_stored(admin_client, pool):
    vm = make_vm(pool, VmStatus.RUNNING)
    page = admin_client.get(f"/vms/{vm.pk}/messages/").content.decode()
    assert "1024 bytes when logged" in page and "8192 bytes when not logged" in page and "256 bytes" in page
    response = admin_client.post(
        f"/vms/{vm.pk}/messages/",
        msg_data(
            [
                {"key": "com.oracle.linux.network.device.0", "value": "eth0"},
                {"key": "com.oracle.linux.root-password", "value": "s3cret", "hidden": "on"},
            ]
        ),
    )
    assert response.status_code == 302
    jobs = Job.objects.filter(operation="vm.message").order_by("pk")
    assert jobs.count() == 2
    assert VmMessage.objects.get(key="com.oracle.linux.root-password").value == "********"
    assert "s3cret" not in str(jobs[1].params)
    assert any(f"#{jobs[0].pk}" in t for t in texts(response))


def test_message_over_the_logged_limit_is_a_row_error(admin_client, pool):
    vm = make_vm(pool, VmStatus.RUNNING)
    response = admin_client.post(
        f"/vms/{vm.pk}/messages/", msg_data([{"key": "ok", "value": "x"}, {"key": "big", "value": "x" * 2000}])
    )
    html = response.content.decode()
    assert response.status_code == 200 and "at most 1024" in html
    assert not Job.objects.exists()
    # Not logged: up to 8192 bytes is fine.
    response = admin_client.post(
        f"/vms/{vm.pk}/messages/", msg_data([{"key": "big", "value": "x" * 2000, "log": False}])
    )
    assert response.status_code == 302 and Job.objects.filter(operation="vm.message").count() == 1


def test_messages_to_a_stopped_vm_are_refused(admin_client, pool):
    vm = make_vm(pool)
    response = admin_client.post(f"/vms/{vm.pk}/messages/", msg_data([{"key": "a", "value": "b"}]), follow=True)
    assert "RUNNING" in response.content.decode()
    assert not Job.objects.exists()


def test_migrate_dialog_live_vs_cold(admin_client, pool):
    here, _there = ServerFactory(server_pool=pool, name="hv-a"), ServerFactory(server_pool=pool, name="hv-b")
    ServerFactory(name="hv-other-pool")
    running = make_vm(pool, VmStatus.RUNNING, server=here)
    page = admin_client.get(f"/vms/{running.pk}/migrate/").content.decode()
    select = re.search(r'<select name="target_server".*?</select>', page, re.S).group(0)
    assert "hv-b" in select and "hv-other-pool" not in select and "hv-a" not in select
    assert 'name="target_pool"' not in page and 'name="target_repository"' not in page
    stopped = make_vm(pool)
    other = ServerPoolFactory(name="pool-b")
    page = admin_client.get(f"/vms/{stopped.pk}/migrate/").content.decode()
    assert 'name="target_pool"' in page and 'name="target_server"' not in page
    stopped.repository.server_pools.add(other)  # the target pool must see the VM's repository
    response = admin_client.post(f"/vms/{stopped.pk}/migrate/", {"target_pool": other.pk})
    assert response.status_code == 302
    assert Job.objects.get(operation="vm.migrate").params["target_pool_id"] == other.pk


def test_migrate_dialog_offers_target_repository_for_local_storage(admin_client, pool):
    here, there = ServerFactory(server_pool=pool), ServerFactory(server_pool=pool)
    local = RepositoryFactory(kind="LOCAL", server=here, server_pools=[pool])
    RepositoryFactory(kind="LOCAL", server=there, server_pools=[pool], name="there-local")
    vm = VirtualMachineFactory(server_pool=pool, repository=local, server=here, status=VmStatus.RUNNING)
    page = admin_client.get(f"/vms/{vm.pk}/migrate/").content.decode()
    assert 'name="target_repository"' in page and "there-local" in page
