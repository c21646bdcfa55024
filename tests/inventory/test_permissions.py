"""The permission table itself: what each kind of user may do, and that it fails closed."""

import pytest
from django.apps import apps
from django.contrib.auth.models import AnonymousUser, Permission
from django.core.exceptions import PermissionDenied

from ovmweb.inventory import permissions
from ovmweb.jobs.services import job_submit
from tests import factories as f

pytestmark = pytest.mark.django_db


def user_with(*codenames, **fields):
    user = f.UserFactory(**fields)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return type(user).objects.get(pk=user.pk)  # no permission cache


def test_an_unknown_action_is_an_error_not_a_decision():
    with pytest.raises(permissions.UnknownAction):
        permissions.can(f.SuperUserFactory(), "vm.teleport")


def test_anonymous_and_inactive_users_may_do_nothing():
    inactive = user_with("view_virtualmachine", is_active=False)
    for user in (None, AnonymousUser(), inactive):
        assert not permissions.can(user, "vm.view")
        with pytest.raises(PermissionDenied):
            permissions.authorize(user, "vm.view")


def test_every_rule_names_real_permissions():
    known = {f"{p.content_type.app_label}.{p.codename}" for p in Permission.objects.select_related("content_type")}
    for action, rule in permissions.RULES.items():
        assert set(rule.perms) | set(rule.perms_alt) <= known, action


def test_every_inventory_and_jobs_model_has_a_view_action():
    for label in ("inventory", "jobs"):
        for model in apps.get_app_config(label).get_models():
            assert permissions.view_action_for(model) in permissions.RULES, model


def test_vm_create_needs_the_source_visible():
    template = f.VirtualMachineFactory(status="TEMPLATE")
    adder = user_with("add_virtualmachine")
    assert permissions.can(adder, "vm.create")
    assert not permissions.can(adder, "vm.create", template)
    assert permissions.can(user_with("add_virtualmachine", "view_virtualmachine"), "vm.create", template)
    iso = f.IsoFileFactory()
    with pytest.raises(PermissionDenied):
        permissions.authorize_vm_create(adder, {"kind": "iso", "iso": iso})
    permissions.authorize_vm_create(adder, {"kind": "none"})


def test_a_job_is_aborted_by_its_owner_or_whoever_may_change_jobs():
    vm = f.VirtualMachineFactory()
    owner = user_with("view_job", "view_virtualmachine")
    job = job_submit(operation="vm.start", summary="s", user=owner, target=vm, lock=[vm])
    assert permissions.can(owner, "job.abort", job)
    assert not permissions.can(user_with("view_job", "view_virtualmachine"), "job.abort", job)
    assert permissions.can(user_with("view_job", "change_job", "view_virtualmachine"), "job.abort", job)
    # Whoever may not see what the job is about may not see, nor abort, the job.
    assert not permissions.can(user_with("view_job", "change_job"), "job.abort", job)
    assert not permissions.can(user_with("view_job"), "job.view", job)


def test_scope_filters_jobs_by_what_they_are_about():
    from ovmweb.jobs.models import Job

    server, vm = f.ServerFactory(), f.VirtualMachineFactory()
    user = user_with("view_job", "view_virtualmachine")
    about_vm = job_submit(operation="vm.start", summary="s", target=vm, lock=[vm])
    job_submit(operation="server.discover", summary="d", target=server)
    mine = job_submit(operation="server.discover", summary="d", user=user, target=server)
    unbound = job_submit(operation="maintenance", summary="m")
    assert set(permissions.scope(user, "job.view", Job.objects.all())) == {about_vm, mine, unbound}
    assert not permissions.scope(f.UserFactory(), "job.view", Job.objects.all()).exists()
