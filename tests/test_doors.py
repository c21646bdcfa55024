"""Every door checks the same permission: the whole URL configuration of the pages, the
console pages and the REST API, and every WebSocket route, walked as the users an attacker
would be.

The URLs are not listed here: they are generated from ``get_resolver()``, their path
parameters filled with the ids of real objects. A route this module cannot classify (a new
namespace, a parameter it has no object for) fails the test instead of being skipped, so a
new page or endpoint is walked from the day it exists; one added without a permission check
answers 200 to a user without permissions, and fails (a).

(a) An authenticated user without any permission: every request answers 403 or 404.
(b) A user holding every ``view_*`` permission: a GET may answer 200, anything else is
    403, 404 or 405.
Both: afterwards no row of any model was added or removed, and no job was queued.

The admin (its own login, staff only) is left out: its ``has_*_permission`` ask the same
table, see tests/admin/test_admin_permissions.py.
"""

from __future__ import annotations

import re

import pytest
from asgiref.sync import async_to_sync
from channels.layers import channel_layers
from django.apps import apps
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern, RoutePattern

from ovmweb.accounts.models import Role, RoleAssignment
from ovmweb.audit.models import AuditAction, AuditRecord
from ovmweb.audit.services import record as audit_record
from ovmweb.inventory import choices
from ovmweb.inventory import models as m
from ovmweb.jobs.models import Event, Job
from ovmweb.jobs.services import event_record, job_submit
from tests import factories as f

# Public or harmless routes, by (namespace, name), and why.
ALLOWED = {
    ("web", "login"): "the sign-in page: a signed-in user is sent on to the home page",
    ("web", "logout"): "ends the caller's own session, nothing else",
    ("web", "home"): "a redirect to the VM list, which is walked itself",
    ("api", "schema"): "the OpenAPI description of the endpoints: names and shapes, no data",
    ("api", "docs"): "Swagger UI over that description",
    ("api", "api-root"): "DRF's index: links to the collections, no data",
    ("api", "tokens"): "trades a user name and password for a token (throttled as the sign-in form); no data",
}
# Walked elsewhere: the admin has its own login page (staff only).
SKIPPED_NAMESPACES = {"admin"}
WALKED_NAMESPACES = {"web", "consoles", "api"}

# Route parameters of the pages -> the object (or value) that fills them.
WEB_PARAMS = {
    "vm_id": "vm",
    "customizer_id": "customizer",
    "slot_id": "slot",
    "vnic_id": "vnic",
    "server_id": "server",
    "pool_id": "pool",
    "repo_id": "repository",
    "appliance_id": "appliance",
    "network_id": "network",
    "job_id": "job",
    "event_id": "event",
    "role_id": "role_assignment",
}
WEB_VALUES = {"source": "iso", "action": "start", "format": "json"}

READS = {200, 302, 403, 404, 405}
# Writes a view-only user may make, and why.
VIEWER_MAY = {
    ("api", "vm-console-tickets"): "a view-only console ticket: watching the screen is viewing the VM "
    "(typing needs change_virtualmachine; the console drops a viewer's input)",
}
REFUSALS_WRITE = {403, 404, 405}
REFUSALS_STRANGER = {403, 404}


# ----------------------------------------------------------------- the estate


@pytest.fixture
def estate(db):
    """One object of every kind a route names, owned by somebody else."""
    owner = f.SuperUserFactory(username="owner")
    pool = f.ServerPoolFactory()
    server = f.ServerFactory(server_pool=pool)
    repository = f.RepositoryFactory(server_pools=[pool])
    network = f.NetworkFactory(server_pools=[pool])
    vm = f.VirtualMachineFactory(server_pool=pool, repository=repository)
    slot = f.VmDiskSlotFactory(vm=vm, slot=0)
    objects = {
        "pool": pool,
        "server": server,
        "repository": repository,
        "network": network,
        "vm": vm,
        "slot": slot,
        "vnic": f.VnicFactory(vm=vm, network=network),
        "disk": slot.virtual_disk,
        "iso": f.IsoFileFactory(repository=repository),
        "customizer": f.CloneCustomizerFactory(vm=vm),
        "appliance": f.VirtualApplianceFactory(repository=repository),
        "anti_affinity_group": f.AntiAffinityGroupFactory(server_pool=pool),
        "compatibility_group": f.ProcessorCompatibilityGroupFactory(),
        "job": job_submit(operation="vm.start", summary="start", user=owner, target=vm, lock=[vm]),
        "event": event_record(obj=vm, type="test", text="hello", user=owner),
        "audit_record": audit_record(action=AuditAction.LOGIN, user=owner, obj=owner, address="10.0.0.1"),
        "role_assignment": RoleAssignment.objects.create(role=Role.VIEWER, user=owner, server_pool=pool),
    }
    m.MacAddressRange.objects.create(pk=1, start="00:21:f6:00:00:00", end="00:21:f6:ff:ff:ff")
    return objects


BY_MODEL = {
    m.ServerPool: "pool",
    m.Server: "server",
    m.Repository: "repository",
    m.Network: "network",
    m.VirtualMachine: "vm",
    m.Vnic: "vnic",
    m.VirtualDisk: "disk",
    m.IsoFile: "iso",
    m.CloneCustomizer: "customizer",
    m.VirtualAppliance: "appliance",
    m.AntiAffinityGroup: "anti_affinity_group",
    m.ProcessorCompatibilityGroup: "compatibility_group",
    Job: "job",
    Event: "event",
    AuditRecord: "audit_record",
}


# ----------------------------------------------------------------- the routes

GROUP = re.compile(r"\(\?P<(\w+)>(?:[^()]|\([^()]*\))*\)")
CONVERTER = re.compile(r"<(?:\w+:)?(\w+)>")


def _template(pattern) -> str:
    """A route as ``vms/{vm_id}/start/``, whatever syntax it was written in."""
    if isinstance(pattern, RoutePattern):
        return CONVERTER.sub(r"{\1}", str(pattern))
    if isinstance(pattern, RegexPattern):
        text = GROUP.sub(r"{\1}", str(pattern)).lstrip("^").rstrip("$")
        return text.replace(r"\.", ".").replace("/?", "/")
    raise AssertionError(f"unknown pattern type {type(pattern).__name__}: {pattern}")


def routes(resolver: URLResolver | None = None, prefix: str = "", namespace: str = ""):
    """(namespace, name, path template, view callback) of every URL pattern, recursively."""
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from routes(entry, prefix + _template(entry.pattern), entry.namespace or namespace)
        elif isinstance(entry, URLPattern):
            yield namespace, entry.name, prefix + _template(entry.pattern), entry.callback
        else:
            raise AssertionError(f"cannot classify URL entry {entry!r}")


def _api_object_key(name: str, callback) -> str:
    """The estate key whose id fills ``pk`` of an API route: the model of its viewset."""
    if name == "vm-console-tickets":
        return "vm"
    cls = getattr(callback, "cls", None)
    queryset = getattr(cls, "queryset", None)
    if queryset is None or queryset.model not in BY_MODEL:
        raise AssertionError(f"API route {name}: no object for its pk (viewset {cls})")
    return BY_MODEL[queryset.model]


def fill(namespace: str, name: str, template: str, callback, estate: dict) -> str:
    """The template with real ids; an unknown parameter is an error, not a skip."""

    def value(match: re.Match) -> str:
        param = match.group(1)
        if param in WEB_VALUES:
            return WEB_VALUES[param]
        if namespace == "api" and param == "pk":
            return str(estate[_api_object_key(name, callback)].pk)
        if namespace == "api" and param == "slot":
            return str(estate["slot"].slot)
        if param in WEB_PARAMS:
            return str(estate[WEB_PARAMS[param]].pk)
        raise AssertionError(f"route {namespace}:{name} ({template}): no value for parameter {param!r}")

    return "/" + re.sub(r"\{(\w+)\}", value, template)


def walked(estate: dict) -> list[tuple[str, str, str]]:
    """(namespace, name, url) of every route to walk."""
    found = []
    for namespace, name, template, callback in routes():
        if namespace in SKIPPED_NAMESPACES or (namespace, name) in ALLOWED:
            continue
        if namespace not in WALKED_NAMESPACES:
            raise AssertionError(f"route {namespace}:{name} ({template}) is in a namespace this test does not know")
        found.append((namespace, name, fill(namespace, name, template, callback, estate)))
    return found


def methods(namespace: str, url: str) -> list[str]:
    detail = namespace == "api" and re.search(r"/\d+(/|\.json/)", url)
    return ["get", "post", "put", "patch", "delete"] if detail else ["get", "post"]


# ----------------------------------------------------------------- the walk


def _row_counts() -> dict[str, int]:
    return {
        model._meta.label: model._base_manager.count()
        for model in apps.get_models()
        if model._meta.managed and not model._meta.proxy
    }


def _walk(user, estate: dict, allowed_for) -> tuple[list[str], int]:
    """Every route with every method; ``allowed_for(method, (namespace, name))`` are the
    statuses it may answer. Returns what answered otherwise, and how many requests ran."""
    client = Client()
    client.force_login(user)
    before, jobs = _row_counts(), Job.objects.count()
    wrong, requests = [], 0
    for namespace, name, url in walked(estate):
        for method in methods(namespace, url):
            kwargs = {"data": "{}", "content_type": "application/json"} if namespace == "api" else {}
            response = getattr(client, method)(url, **kwargs) if method != "get" else client.get(url)
            requests += 1
            if response.status_code not in allowed_for(method, (namespace, name)):
                wrong.append(f"{method.upper()} {url} ({namespace}:{name}) -> {response.status_code}")
    assert Job.objects.count() == jobs, "a job was queued"
    assert _row_counts() == before, "rows were added or removed"
    return wrong, requests


def test_a_user_without_permissions_is_refused_everywhere(estate):
    wrong, requests = _walk(f.UserFactory(username="nobody"), estate, lambda method, route: REFUSALS_STRANGER)
    assert wrong == [], "\n".join(wrong)
    assert requests > 250  # the walk really covered the URL configuration


def test_a_user_who_may_only_view_changes_nothing(estate):
    viewer = f.UserFactory(username="viewer")
    viewer.user_permissions.add(*Permission.objects.filter(codename__startswith="view_"))

    def allowed_for(method, route):
        if method == "get":
            return READS
        # The empty body is refused (400); a ticket issued would add a row and fail the count.
        return REFUSALS_WRITE | ({400} if route in VIEWER_MAY and method == "post" else set())

    wrong, requests = _walk(viewer, estate, allowed_for)
    assert wrong == [], "\n".join(wrong)
    assert requests > 250


def test_the_walk_sees_pages_that_open(estate, admin_client):
    """The control case: the same URLs answer a superuser, so the refusals above are permissions,
    not broken URLs."""
    opened = [url for namespace, _name, url in walked(estate) if admin_client.get(url).status_code == 200]
    assert len(opened) > 60


def test_every_api_action_has_a_rule():
    """Each viewset action maps to an action of the permissions table (or a request would be a 500)."""
    from rest_framework.test import APIRequestFactory

    from ovmweb.api.views.base import permission_action
    from ovmweb.inventory.permissions import rule_for

    request = APIRequestFactory().get("/")
    for namespace, name, _template, callback in routes():
        cls = getattr(callback, "cls", None)
        actions = getattr(callback, "actions", None)
        if namespace != "api" or cls is None or actions is None:
            continue
        for action in actions.values():
            view = cls(action=action)
            names = permission_action(request, view)
            for each in names if isinstance(names, tuple) else (names,):
                rule_for(each)  # UnknownAction otherwise
        assert name


# ----------------------------------------------------------------- WebSockets


@pytest.fixture
def fresh_channel_layer():
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def _connects(path: str, user) -> bool:
    from tests.consoles import ws

    headers = ws.headers(user)

    async def attempt():
        comm = ws.communicator(path, headers)
        connected, _code = await comm.connect()
        await comm.disconnect()
        return connected

    return async_to_sync(attempt)()


@pytest.mark.django_db(transaction=True)
def test_every_websocket_route_refuses_a_user_without_permissions(fresh_channel_layer):
    from ovmweb.consoles.services import ticket_issue
    from ovmweb.routing import websocket_urlpatterns
    from tests.consoles.targets import TcpTarget

    target = TcpTarget("echo")
    try:
        server = f.ServerFactory(hostname="localhost", transport=choices.Transport.LOCAL)
        vm = f.VirtualMachineFactory(
            server=server,
            server_pool=server.server_pool,
            status=choices.VmStatus.RUNNING,
            vnc_port=target.port,
            serial_port=target.port,
        )
        stranger = f.UserFactory(username="stranger")
        owner = f.SuperUserFactory(username="ws-owner")
        paths = []
        for pattern in websocket_urlpatterns:
            template = _template(pattern.pattern)
            params = set(re.findall(r"\{(\w+)\}", template))
            if params - {"vm_id"}:
                raise AssertionError(f"WebSocket route {template}: no value for {params - {'vm_id'}}")
            paths.append("/" + template.replace("{vm_id}", str(vm.pk)))
        assert len(paths) >= 3
        for path in paths:
            if "/console/" in path:
                kind = path.split("/")[3]
                # The stranger cannot get a ticket of their own; the owner's is bound to the owner.
                token = ticket_issue(user=owner, vm=vm, kind=kind)[1]
                assert not _connects(f"{path}?ticket={token}", stranger), path
                assert not _connects(path, stranger), path
                # Control: the same route with the owner's own ticket opens.
                assert _connects(f"{path}?ticket={token}", owner), path
            else:
                assert not _connects(path, stranger), path
                assert _connects(path, owner), path
    finally:
        target.close()
