"""``list`` and ``show`` of every kind of object, as tables or ``--json``.

Lists page by cursor (``?cursor=``): the 2,000th page of VMs costs what the first does.
Filters the API has (VMs: search, pool, server, status) are asked of the server; the
others are applied here while paging, and ``--limit`` counts the rows shown."""

from __future__ import annotations

from collections.abc import Callable

import click

from .client import Names
from .output import Column, detail, gib, json_option, mib, note, table

limit_option = click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many rows."
)
all_option = click.option("--all", "everything", is_flag=True, help="Every row (overrides --limit).")


def _rows(client, collection: str, *, limit: int | None, keep: Callable[[dict], bool] | None = None, **params):
    """Rows of ``collection`` kept by ``keep``, at most ``limit`` (None: all), and whether more were left."""
    rows, more = [], False
    for row in client.pages(collection, **params):
        if keep is not None and not keep(row):
            continue
        if limit is not None and len(rows) >= limit:
            more = True
            break
        rows.append(row)
    return rows, more


def _list(settings, collection: str, columns: list[Column], *, limit, everything, as_json, keep=None, **params):
    client = settings.client()
    rows, more = _rows(client, collection, limit=None if everything else limit, keep=keep, **params)
    table(rows, columns(Names(client)) if callable(columns) else columns, as_json=as_json)
    if more and not as_json:
        note(f"(first {limit} shown: --limit N or --all for more)")


def _show(settings, collection: str, ref: str, *, what: str, as_json: bool, search: bool = False) -> None:
    detail(settings.client().find(collection, ref, what=what, search=search), as_json=as_json)


def _group(name: str, collection: str, what: str, doc: str, *, search: bool = False) -> click.Group:
    """A command group with ``show NAME|ID``; its ``list`` is added by each kind below."""

    @click.group(name=name, help=doc)
    def group():
        pass

    @group.command()
    @click.argument("ref", metavar="NAME|ID")
    @json_option
    @click.pass_obj
    def show(settings, ref, as_json):
        """Everything about one object."""
        _show(settings, collection, ref, what=what, as_json=as_json, search=search)

    return group


server = _group("server", "servers", "server", "Servers (hypervisor hosts).")
pool = _group("pool", "server-pools", "server pool", "Server pools.")
repository = _group("repository", "repositories", "repository", "Storage repositories.")
network = _group("network", "networks", "network", "Networks.")
vm = _group("vm", "vms", "VM", "Virtual machines: list, show, power actions, edit, console.", search=True)
job = _group("job", "jobs", "job", "Jobs: list, show, watch, abort.")
event = _group("event", "events", "event", "Events.")
iso = _group("iso", "iso-files", "ISO file", "ISO files: list, import from a URL.")


@server.command("list")
@click.option("--pool", "pool_ref", metavar="NAME|ID", help="Only the servers of this pool.")
@click.option("--status", help="Only servers in this status (RUNNING, OFFLINE...).")
@limit_option
@all_option
@json_option
@click.pass_obj
def server_list(settings, pool_ref, status, limit, everything, as_json):
    """Servers, with their pool, status and size."""
    pool_id = settings.client().find_id("server-pools", pool_ref, what="server pool")

    def keep(row):
        return (pool_ref is None or row.get("server_pool") == pool_id) and (status is None or row["status"] == status)

    def columns(names):
        return [
            ("ID", lambda r: r["id"]),
            ("Name", lambda r: r["name"]),
            ("Host", lambda r: r["hostname"]),
            ("Status", lambda r: r["status"]),
            ("Pool", lambda r: names("server-pools", r.get("server_pool"))),
            ("Cores", lambda r: r.get("cpu_cores")),
            ("Memory", lambda r: mib(r.get("memory_mib"))),
        ]

    _list(settings, "servers", columns, limit=limit, everything=everything, as_json=as_json, keep=keep)


@pool.command("list")
@limit_option
@all_option
@json_option
@click.pass_obj
def pool_list(settings, limit, everything, as_json):
    """Server pools."""
    columns = [("ID", lambda r: r["id"]), ("Name", lambda r: r["name"]), ("Description", lambda r: r["description"])]
    _list(settings, "server-pools", columns, limit=limit, everything=everything, as_json=as_json)


@repository.command("list")
@click.option("--pool", "pool_ref", metavar="NAME|ID", help="Only repositories presented to this pool.")
@limit_option
@all_option
@json_option
@click.pass_obj
def repository_list(settings, pool_ref, limit, everything, as_json):
    """Repositories, with their kind and space."""
    pool_id = settings.client().find_id("server-pools", pool_ref, what="server pool")

    def columns(names):
        return [
            ("ID", lambda r: r["id"]),
            ("Name", lambda r: r["name"]),
            ("Kind", lambda r: r["kind"]),
            ("Path", lambda r: r["path"]),
            ("Server", lambda r: names("servers", r.get("server"))),
            ("Free", lambda r: gib(r.get("available_bytes"))),
            ("Size", lambda r: gib(r.get("capacity_bytes"))),
        ]

    keep = None if pool_ref is None else (lambda r: pool_id in (r.get("server_pools") or []))
    _list(settings, "repositories", columns, limit=limit, everything=everything, as_json=as_json, keep=keep)


@network.command("list")
@limit_option
@all_option
@json_option
@click.pass_obj
def network_list(settings, limit, everything, as_json):
    """Networks."""
    columns = [
        ("ID", lambda r: r["id"]),
        ("Name", lambda r: r["name"]),
        ("Bridge", lambda r: r.get("bridge") or r.get("libvirt_network")),
        ("VLAN", lambda r: r.get("vlan_id")),
        ("Roles", lambda r: ", ".join(r.get("roles") or [])),
    ]
    _list(settings, "networks", columns, limit=limit, everything=everything, as_json=as_json)


@vm.command("list")
@click.option("--search", "-s", help="Part of the name or description.")
@click.option("--pool", "pool_ref", metavar="NAME|ID", help="Only VMs of this pool.")
@click.option("--server", "server_ref", metavar="NAME|ID", help="Only VMs on this server.")
@click.option("--status", help="Only VMs in this status (RUNNING, STOPPED, SUSPENDED...).")
@limit_option
@all_option
@json_option
@click.pass_obj
def vm_list(settings, search, pool_ref, server_ref, status, limit, everything, as_json):
    """Virtual machines (filtered on the server, paged by cursor)."""
    client = settings.client()
    params = {
        "search": search,
        "server_pool": client.find_id("server-pools", pool_ref, what="server pool"),
        "server": client.find_id("servers", server_ref, what="server"),
        "status": status.upper() if status else None,
    }

    def columns(names):
        return [
            ("ID", lambda r: r["id"]),
            ("Name", lambda r: r["name"]),
            ("Status", lambda r: r["status"]),
            ("Server", lambda r: names("servers", r.get("server"))),
            ("Pool", lambda r: names("server-pools", r.get("server_pool"))),
            ("vCPUs", lambda r: r["vcpus"]),
            ("Memory", lambda r: mib(r["memory_mib"])),
            ("Pending", lambda r: "yes" if r.get("pending_changes") else ""),
        ]

    params = {k: v for k, v in params.items() if v is not None}
    _list(settings, "vms", columns, limit=limit, everything=everything, as_json=as_json, **params)


JOB_COLUMNS: list[Column] = [
    ("ID", lambda r: r["id"]),
    ("Summary", lambda r: r.get("summary") or r.get("operation")),
    ("Status", lambda r: r["status"]),
    ("Progress", lambda r: f"{r.get('progress') or 0}%"),
    ("User", lambda r: r.get("user") or "system"),
    ("Created", lambda r: (r.get("created_at") or "")[:19].replace("T", " ")),
]


@job.command("list")
@click.option("--status", help="Only jobs in this status (QUEUED, RUNNING, SUCCESS, FAILURE, ABORTED).")
@click.option("--user", "username", help="Only the jobs of this user.")
@limit_option
@all_option
@json_option
@click.pass_obj
def job_list(settings, status, username, limit, everything, as_json):
    """Jobs, newest first."""
    status = status.upper() if status else None

    def keep(row):
        return (status is None or row["status"] == status) and (username is None or row.get("user") == username)

    _list(settings, "jobs", JOB_COLUMNS, limit=limit, everything=everything, as_json=as_json, keep=keep)


@event.command("list")
@click.option("--severity", help="Only this severity (INFO, WARNING, ERROR, CRITICAL).")
@click.option("--unacknowledged", is_flag=True, help="Only events nobody acknowledged.")
@limit_option
@all_option
@json_option
@click.pass_obj
def event_list(settings, severity, unacknowledged, limit, everything, as_json):
    """Events, newest first."""
    severity = severity.upper() if severity else None

    def keep(row):
        return (severity is None or row["severity"] == severity) and not (unacknowledged and row["acknowledged"])

    columns = [
        ("ID", lambda r: r["id"]),
        ("When", lambda r: (r.get("created_at") or "")[:19].replace("T", " ")),
        ("Severity", lambda r: r["severity"]),
        ("Object", lambda r: r.get("object_repr")),
        ("Text", lambda r: r.get("text")),
    ]
    _list(settings, "events", columns, limit=limit, everything=everything, as_json=as_json, keep=keep)


@iso.command("list")
@click.option("--repository", "repo_ref", metavar="NAME|ID", help="Only the ISO files of this repository.")
@limit_option
@all_option
@json_option
@click.pass_obj
def iso_list(settings, repo_ref, limit, everything, as_json):
    """ISO files."""
    repo_id = settings.client().find_id("repositories", repo_ref, what="repository")

    def columns(names):
        return [
            ("ID", lambda r: r["id"]),
            ("Name", lambda r: r["name"]),
            ("Repository", lambda r: names("repositories", r.get("repository"))),
            ("Size", lambda r: gib(r.get("size_bytes"))),
        ]

    keep = None if repo_ref is None else (lambda r: r.get("repository") == repo_id)
    _list(settings, "iso-files", columns, limit=limit, everything=everything, as_json=as_json, keep=keep)
