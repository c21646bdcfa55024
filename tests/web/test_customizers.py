"""Clone customizers in the UI (seed 7.6): the VM's Clone Customizers page, Create, Edit and
Delete through the real service, its rules coming back on the form, and the permissions of
the other VM pages."""

import pytest
from django.contrib.auth.models import Permission

from ovmweb.inventory.models import CloneCustomizer
from ovmweb.inventory.services import customizers as customizer_services
from ovmweb.inventory.services import vm_copies
from ovmweb.jobs.models import Event, Job
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def estate():
    pool = f.ServerPoolFactory()
    repo, other = f.RepositoryFactory(server_pools=[pool]), f.RepositoryFactory(server_pools=[pool])
    vm = f.VirtualMachineFactory(server_pool=pool, repository=repo, name="web01")
    slots = [f.VmDiskSlotFactory(vm=vm, slot=i, virtual_disk=f.VirtualDiskFactory(repository=repo)) for i in (0, 1)]
    vnic = f.VnicFactory(vm=vm)
    return {
        "pool": pool,
        "repo": repo,
        "other": other,
        "vm": vm,
        "slots": slots,
        "vnic": vnic,
        "net": f.NetworkFactory(),
    }


def form_data(e, **extra):
    s0, s1 = e["slots"]
    data = {
        "name": "to-other",
        "description": "disk 0 to the other array",
        f"disk_{s0.pk}_repository": e["other"].pk,
        f"disk_{s0.pk}_clone_type": "NON_SPARSE",
        f"disk_{s1.pk}_repository": "",
        f"disk_{s1.pk}_clone_type": "SPARSE",
        f"vnic_{e['vnic'].pk}_network": e["net"].pk,
    }
    data.update(extra)
    return data


def test_toolbar_links_to_the_customizers_page(admin_client, estate):
    vm = estate["vm"]
    html = admin_client.get(f"/vms/toolbar/?vm={vm.pk}").content.decode()
    assert f'href="/vms/{vm.pk}/customizers/" data-customizers' in html
    assert (
        "disabled" in admin_client.get("/vms/toolbar/").content.decode().split("data-customizers")[0].rsplit("<", 1)[-1]
    )


def test_create_edit_delete_through_the_pages(admin_client, estate):
    e = estate
    vm, (s0, s1) = e["vm"], e["slots"]
    page = admin_client.get(f"/vms/{vm.pk}/customizers/new/").content.decode()
    assert f'name="disk_{s0.pk}_repository"' in page and f'name="vnic_{e["vnic"].pk}_network"' in page
    response = admin_client.post(f"/vms/{vm.pk}/customizers/new/", form_data(e))
    assert response.status_code == 302 and response["Location"] == f"/vms/{vm.pk}/customizers/"
    c = CloneCustomizer.objects.get(vm=vm)
    assert (c.name, c.description) == ("to-other", "disk 0 to the other array")
    # Only the disk given a repository is customized; the other one clones as a simple clone.
    assert list(c.disks.values_list("slot_id", "target_repository_id", "clone_type")) == [
        (s0.pk, e["other"].pk, "NON_SPARSE")
    ]
    assert list(c.networks.values_list("vnic_id", "network_id")) == [(e["vnic"].pk, e["net"].pk)]
    assert Event.objects.filter(type="customizer.create").count() == 1

    detail = admin_client.get(f"/vms/{vm.pk}/detail/").content.decode()
    assert f'<a href="/vms/{vm.pk}/customizers/" data-customizer-count>1</a>' in detail
    assert (
        "Clone Customizers… in the virtual machine toolbar" in admin_client.get(f"/vms/{vm.pk}/move/").content.decode()
    )
    listing = admin_client.get(f"/vms/{vm.pk}/customizers/").content.decode()
    assert "to-other" in listing and e["other"].name in listing and "Non-sparse copy" in listing

    # The edit form starts from what is saved; saving replaces the lists.
    edit = admin_client.get(f"/customizers/{c.pk}/edit/").content.decode()
    assert f'<option value="{e["other"].pk}" selected>' in edit and '<option value="NON_SPARSE" selected>' in edit
    response = admin_client.post(
        f"/customizers/{c.pk}/edit/",
        form_data(
            e,
            name="thin-all",
            **{
                f"disk_{s0.pk}_repository": e["repo"].pk,
                f"disk_{s0.pk}_clone_type": "THIN",
                f"disk_{s1.pk}_repository": e["repo"].pk,
                f"disk_{s1.pk}_clone_type": "THIN",
                f"vnic_{e['vnic'].pk}_network": "",
            },
        ),
    )
    assert response.status_code == 302
    c.refresh_from_db()
    assert c.name == "thin-all" and c.networks.count() == 0
    assert sorted(c.disks.values_list("slot_id", "clone_type")) == [(s0.pk, "THIN"), (s1.pk, "THIN")]

    # The clone form offers it; a clone with it queues the plan it names.
    assert f'<option value="{c.pk}">thin-all</option>' in admin_client.get(f"/vms/{vm.pk}/clone/").content.decode()

    assert admin_client.post(f"/customizers/{c.pk}/delete/").status_code == 302
    assert not CloneCustomizer.objects.exists()
    assert Event.objects.filter(type="customizer.delete", object_id=vm.pk).exists()
    assert admin_client.get(f"/customizers/{c.pk}/delete/").status_code == 405


def test_service_rules_come_back_on_the_form(admin_client, estate):
    e = estate
    vm, (s0, _s1) = e["vm"], e["slots"]
    customizer_services.customizer_create(vm=vm, user=None, name="taken")
    stranger = f.RepositoryFactory()  # presented to no pool of the VM
    response = admin_client.post(
        f"/vms/{vm.pk}/customizers/new/", form_data(e, **{f"disk_{s0.pk}_repository": stranger.pk})
    )
    assert response.status_code == 200
    assert "is not seen by the server pool of web01" in response.content.decode()
    response = admin_client.post(f"/vms/{vm.pk}/customizers/new/", form_data(e, name="taken"))
    assert response.status_code == 200 and "already exists" in response.content.decode()
    response = admin_client.post(f"/vms/{vm.pk}/customizers/new/", form_data(e, **{f"disk_{s0.pk}_clone_type": "COPY"}))
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert list(CloneCustomizer.objects.values_list("name", flat=True)) == ["taken"]


def test_queued_clone_keeps_its_plan_when_the_customizer_goes(admin_client, estate):
    e = estate
    vm, (s0, _s1) = e["vm"], e["slots"]
    c = customizer_services.customizer_create(
        vm=vm, user=None, name="plan", disks=[{"slot": s0, "target_repository": e["other"], "clone_type": "NON_SPARSE"}]
    )
    job = vm_copies.vm_clone(vm=vm, user=None, name="web02", customizer=c)
    assert admin_client.post(f"/customizers/{c.pk}/delete/").status_code == 302
    job = Job.objects.get(pk=job.pk)
    planned = {d["slot"]: (d["target_repository_id"], d["clone_type"]) for d in job.params["disks"]}
    assert planned[0] == (e["other"].pk, "NON_SPARSE")


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="inventory", codename__in=codenames))


def test_permissions_as_on_other_vm_pages(client, estate):
    vm = estate["vm"]
    c = customizer_services.customizer_create(vm=vm, user=None, name="plan")
    user = f.UserFactory()
    client.force_login(user)
    pages = [f"/vms/{vm.pk}/customizers/", f"/vms/{vm.pk}/customizers/new/", f"/customizers/{c.pk}/edit/"]
    for url in pages:
        assert client.get(url).status_code == 403, url
    grant(user, "view_virtualmachine", "view_clonecustomizer")
    assert client.get(pages[0]).status_code == 200
    # Viewing is not changing: no create, edit or delete without change permission on the VM.
    grant(user, "add_clonecustomizer", "change_clonecustomizer", "delete_clonecustomizer")
    assert client.get(pages[1]).status_code == 403
    assert client.post(pages[2], {"name": "renamed"}).status_code == 403
    assert client.post(f"/customizers/{c.pk}/delete/").status_code == 403
    grant(user, "change_virtualmachine")
    assert client.get(pages[1]).status_code == 200
    assert client.post(f"/customizers/{c.pk}/delete/").status_code == 302
    assert not CloneCustomizer.objects.exists()
    client.logout()
    assert client.get(pages[0]).status_code == 302  # to the login page
