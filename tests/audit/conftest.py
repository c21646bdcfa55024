"""A job operation for the audit tests, registered like real ones."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from ovmweb.jobs.registry import JobContext, operation
from tests import factories


@operation("test.audit_ok")
def audit_ok(ctx: JobContext) -> dict:
    return {}


@operation("test.audit_fails")
def audit_fails(ctx: JobContext) -> None:
    raise RuntimeError("no")


@pytest.fixture
def alice(db):
    return factories.UserFactory(username="alice")


@pytest.fixture
def auditor(db):
    user = factories.UserFactory(username="auditor")
    user.user_permissions.add(Permission.objects.get(codename="view_auditrecord"))
    return user
