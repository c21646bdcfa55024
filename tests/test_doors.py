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
from collections import Counter

import pytest
from asgiref.sync import async_to_sync
from channels.layers import channel_layers
from django.apps import apps
from django.contrib.auth.models import Permission
from django.http import Http404
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
    "disk_id": "disk",
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
    if name.startswith("vm-console-"):  # the console routes of a VM (tickets, who is watching)
        return "vm"
    cls = getattr(callback, "cls", None)
    queryset = getattr(cls, "queryset", None)
    if queryset is None or queryset.model not in BY_MODEL:
        raise AssertionError(f"API route {name}: no object for its pk (viewset {cls})")
    return BY_MODEL[queryset.model]


def fill(namespace: str, name: str, template: str, callback, estate: dict, keys: set | None = None) -> str:
    """The template with real ids; an unknown parameter is an error, not a skip. ``keys``
    receives the estate keys of the objects the URL names."""
    keys = set() if keys is None else keys

    def value(match: re.Match) -> str:
        param = match.group(1)
        if param in WEB_VALUES:
            return WEB_VALUES[param]
        if namespace == "api" and param == "pk":
            keys.add(_api_object_key(name, callback))
        elif namespace == "api" and param == "slot":
            keys.add("slot")
            return str(estate["slot"].slot)
        elif param in WEB_PARAMS:
            keys.add(WEB_PARAMS[param])
        else:
            raise AssertionError(f"route {namespace}:{name} ({template}): no value for parameter {param!r}")
        return str(estate[_api_object_key(name, callback) if param == "pk" else WEB_PARAMS[param]].pk)

    return "/" + re.sub(r"\{(\w+)\}", value, template)


def walked(estate: dict, *, with_keys: bool = False) -> list[tuple]:
    """(namespace, name, url) of every route to walk (and the estate keys its URL names)."""
    found = []
    for namespace, name, template, callback in routes():
        if namespace in SKIPPED_NAMESPACES or (namespace, name) in ALLOWED:
            continue
        if namespace not in WALKED_NAMESPACES:
            raise AssertionError(f"route {namespace}:{name} ({template}) is in a namespace this test does not know")
        keys: set = set()
        url = fill(namespace, name, template, callback, estate, keys)
        found.append((namespace, name, url, frozenset(keys)) if with_keys else (namespace, name, url))
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


def _walk(
    user, estate: dict, allowed_for, *, hidden: tuple[str, ...] = (), reads_only: bool = False
) -> tuple[list[str], Counter]:
    """Every route with every method; ``allowed_for(method, (namespace, name), keys)`` are the
    statuses it may answer (``keys``: the estate objects its URL names), and no answer may name
    one of ``hidden``. Returns what answered otherwise, and how many requests answered each status."""
    client = Client()
    client.force_login(user)
    before, jobs = _row_counts(), Job.objects.count()
    wrong, requests = [], Counter()
    for namespace, name, url, keys in walked(estate, with_keys=True):
        for method in ["get"] if reads_only else methods(namespace, url):
            kwargs = {"data": "{}", "content_type": "application/json"} if namespace == "api" else {}
            response = getattr(client, method)(url, **kwargs) if method != "get" else client.get(url)
            requests[response.status_code] += 1
            if response.status_code not in allowed_for(method, (namespace, name), keys):
                wrong.append(f"{method.upper()} {url} ({namespace}:{name}) -> {response.status_code}")
            body = getattr(response, "content", b"").decode(errors="replace")
            wrong += [
                f"{method.upper()} {url} ({namespace}:{name}) names {secret!r}" for secret in hidden if secret in body
            ]
    assert Job.objects.count() == jobs, "a job was queued"
    assert _row_counts() == before, "rows were added or removed"
    return wrong, requests


def test_a_user_without_permissions_is_refused_everywhere(estate):
    wrong, requests = _walk(f.UserFactory(username="nobody"), estate, lambda method, route, url: REFUSALS_STRANGER)
    assert wrong == [], "\n".join(wrong)
    assert requests.total() > 250  # the walk really covered the URL configuration


def test_a_user_who_may_only_view_changes_nothing(estate):
    viewer = f.UserFactory(username="viewer")
    viewer.user_permissions.add(*Permission.objects.filter(codename__startswith="view_"))

    def allowed_for(method, route, url):
        if method == "get":
            return READS
        # The empty body is refused (400); a ticket issued would add a row and fail the count.
        return REFUSALS_WRITE | ({400} if route in VIEWER_MAY and method == "post" else set())

    wrong, requests = _walk(viewer, estate, allowed_for)
    assert wrong == [], "\n".join(wrong)
    assert requests.total() > 250


# ----------------------------------------------------------------- roles per pool

# Objects that belong to the estate's pool ("alpha"); the others belong to no pool.
POOL_KEYS = {"pool", "server", "vm", "slot", "vnic", "disk", "customizer", "anti_affinity_group", "job", "event"}
POOL_KEYS |= {"role_assignment"}  # read and changed through its pool
ALPHA = "alpha-secret"


@pytest.fixture
def two_pools(estate):
    """The estate's pool, its server, VM, customizer and anti-affinity group get names no other
    user may read; a second pool holds a VM of its own."""
    for key in ("pool", "server", "vm", "customizer", "anti_affinity_group"):
        type(estate[key]).objects.filter(pk=estate[key].pk).update(name=f"{ALPHA}-{key}")
    beta = f.ServerPoolFactory(name="beta-pool")
    f.VirtualMachineFactory(
        name="beta-vm", server_pool=beta, server=f.ServerFactory(name="beta-server", server_pool=beta)
    )
    return estate, beta


def _role_user(role: str, pool, username: str):
    user = f.UserFactory(username=username)
    RoleAssignment.objects.create(role=role, user=user, server_pool=pool)
    return user


@pytest.mark.parametrize("role", Role.values)
def test_a_role_on_another_pool_finds_nothing_of_this_one(two_pools, role):
    """A user who holds ``role`` on the other pool only: every URL naming an object of this pool
    answers 404 (or a refusal that names nothing: 403 before any lookup, 405), lists answer
    without its names, and nothing changes. A new view without a role check answers 200 and fails."""
    estate, beta = two_pools
    user = _role_user(role, beta, f"{role}-of-beta")

    def allowed_for(method, route, keys):
        if route == ("web", "vm_row") and method == "get":
            return {200}  # an empty row: the VM is gone for this user (the hidden names are checked)
        if keys & POOL_KEYS or keys - POOL_KEYS:
            return REFUSALS_WRITE
        return READS | ({400} if method != "get" else set())

    wrong, statuses = _walk(user, estate, allowed_for, hidden=(ALPHA,))
    assert wrong == [], "\n".join(wrong)
    assert statuses[404] > 40  # the lookups themselves refused: not found, not forbidden
    client = Client()
    client.force_login(user)
    # Control: the pool of the role is there, in the list and the API.
    assert "beta-vm" in client.get("/vms/").content.decode()
    assert [vm["name"] for vm in client.get("/api/v1/vms/").json()["results"]] == ["beta-vm"]


def test_a_viewer_of_the_pool_reads_it_and_changes_nothing(two_pools):
    estate, _beta = two_pools
    viewer = _role_user(Role.VIEWER, estate["pool"], "viewer-of-alpha")

    def allowed_for(method, route, keys):
        if method == "get":
            return READS
        return REFUSALS_WRITE | ({400} if route in VIEWER_MAY and method == "post" else set())

    wrong, statuses = _walk(viewer, estate, allowed_for)
    assert wrong == [], "\n".join(wrong)
    assert statuses[200] > 40


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.ADMINISTRATOR])
def test_operators_and_administrators_of_the_pool_read_every_page(two_pools, role):
    """Every page and endpoint answers a role on the pool (no 500), and none names the other pool's VM
    (their writes are tested one by one: tests/api/test_pool_roles.py, tests/inventory/test_roles.py)."""
    estate, _beta = two_pools
    user = _role_user(role, estate["pool"], f"{role}-of-alpha")
    wrong, statuses = _walk(
        user, estate, lambda method, route, keys: READS, hidden=("beta-vm", "beta-pool", "beta-server"), reads_only=True
    )
    assert wrong == [], "\n".join(wrong)
    assert statuses[200] > 60


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
        # An Operator of another pool is as much a stranger to this VM (and a Viewer of the live feed).
        elsewhere = f.UserFactory(username="operator-elsewhere")
        RoleAssignment.objects.create(role=Role.OPERATOR, user=elsewhere, server_pool=f.ServerPoolFactory())
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
                assert not _connects(f"{path}?ticket={token}", elsewhere), path
                with pytest.raises(Http404):  # nor get a ticket of their own: the VM is not found
                    ticket_issue(user=elsewhere, vm=vm, kind=kind)
                assert not _connects(path, stranger), path
                # Control: the same route with the owner's own ticket opens.
                assert _connects(f"{path}?ticket={token}", owner), path
            else:
                assert not _connects(path, stranger), path
                assert _connects(path, owner), path
    finally:
        target.close()
