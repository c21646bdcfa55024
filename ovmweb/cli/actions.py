"""Commands that change things: VM power actions and the rest of a VM's life
(migrate, clone, move, export, delete, edit, messages), server discovery, ISO import,
job abort.

An action takes many VMs: each is asked in turn, a refusal (409, 404...) is said in
one line and the others go on; the exit code is that of the first refusal. With
``--wait`` each queued job is followed to its end, and one that fails makes the exit
code 1."""

from __future__ import annotations

import json
import sys

import click

from .client import EXIT_INVALID, CliError
from .output import detail, json_option, note
from .waiting import announce, wait_for

wait_option = click.option("--wait", "-w", is_flag=True, help="Follow each job to its end (progress bars).")
timeout_option = click.option("--wait-timeout", type=float, default=None, help="With --wait: give up after N s.")


def run_on_vms(settings, refs, body_of, *, path: str, wait: bool, as_json: bool, wait_timeout=None) -> None:
    """POST ``vms/<id>/<path>/`` for each VM named; queue, report, maybe wait; exit with the worst outcome."""
    client = settings.client()
    jobs, first_error = [], None
    for ref in refs:
        try:
            vm = client.find("vms", ref, what="VM", search=True)
            answer = client.post(f"vms/{vm['id']}/{path}/", body_of(vm) if body_of else None)
        except CliError as exc:
            click.echo(f"ovmweb: VM {ref}: {exc}", err=True)
            first_error = first_error or exc
            continue
        jobs += answer.get("jobs", [answer])
    finish(client, jobs, wait=wait, as_json=as_json, wait_timeout=wait_timeout, first_error=first_error)


def finish(client, jobs, *, wait: bool, as_json: bool, wait_timeout=None, first_error=None) -> None:
    announce(jobs, as_json=as_json, wait=wait)
    code = wait_for(client, jobs, as_json=as_json, timeout=wait_timeout) if wait and jobs else 0
    if first_error is not None:
        sys.exit(first_error.code)
    if code:
        sys.exit(code)


def _power(name: str, doc: str):
    @click.command(name=name, help=doc)
    @click.argument("refs", nargs=-1, required=True, metavar="VM...")
    @wait_option
    @timeout_option
    @json_option
    @click.pass_obj
    def command(settings, refs, wait, wait_timeout, as_json):
        run_on_vms(settings, refs, None, path=name, wait=wait, as_json=as_json, wait_timeout=wait_timeout)

    return command


POWER = {
    "start": "Start stopped VMs.",
    "stop": "Shut running VMs down (ACPI).",
    "restart": "Restart running VMs.",
    "kill": "Power VMs off at once.",
    "suspend": "Suspend running VMs.",
    "resume": "Resume suspended VMs.",
    "export": "Export stopped VMs as OVA files into their repository's Assemblies/.",
}


def vm_migrate(settings, refs, server_ref, pool_ref, repo_ref, wait, wait_timeout, as_json):
    """Live-migrate running VMs to another server of their pool, or move stopped ones to another pool."""
    client = settings.client()
    if not (server_ref or pool_ref):
        raise CliError("say where to: --server NAME or --pool NAME", EXIT_INVALID)
    body = {
        "target_server": client.find_id("servers", server_ref, what="server"),
        "target_pool": client.find_id("server-pools", pool_ref, what="server pool"),
        "target_repository": client.find_id("repositories", repo_ref, what="repository"),
    }
    body = {k: v for k, v in body.items() if v is not None}
    run_on_vms(settings, refs, lambda vm: body, path="migrate", wait=wait, as_json=as_json, wait_timeout=wait_timeout)


def vm_clone(settings, ref, new_name, pool_ref, customizer_ref, template, wait, wait_timeout, as_json):
    """Clone a VM or template."""
    client = settings.client()
    body = {"name": new_name, "as_template": template}
    if pool_ref:
        body["server_pool"] = client.find_id("server-pools", pool_ref, what="server pool")
    if customizer_ref:
        body["customizer"] = client.find_id("clone-customizers", customizer_ref, what="clone customizer")
    run_on_vms(settings, [ref], lambda vm: body, path="clone", wait=wait, as_json=as_json, wait_timeout=wait_timeout)


def vm_move(settings, refs, repo_ref, customizer_ref, wait, wait_timeout, as_json):
    """Move stopped VMs' configuration and disks to another repository (or per disk, with a customizer)."""
    client = settings.client()
    if bool(repo_ref) == bool(customizer_ref):
        raise CliError("give exactly one of --repository or --customizer", EXIT_INVALID)
    body = (
        {"target_repository": client.find_id("repositories", repo_ref, what="repository")}
        if repo_ref
        else {"customizer": client.find_id("clone-customizers", customizer_ref, what="clone customizer")}
    )
    run_on_vms(settings, refs, lambda vm: body, path="move", wait=wait, as_json=as_json, wait_timeout=wait_timeout)


def vm_delete(settings, refs, yes, wait, wait_timeout, as_json):
    """Delete VMs (stopped ones) with their disks that nothing else uses."""
    client = settings.client()
    if not yes and not click.confirm(f"Delete {', '.join(refs)}?", err=True):
        raise CliError("nothing deleted", EXIT_INVALID)
    jobs, first_error = [], None
    for ref in refs:
        try:
            vm = client.find("vms", ref, what="VM", search=True)
            answer = client.delete(f"vms/{vm['id']}/")
        except CliError as exc:
            click.echo(f"ovmweb: VM {ref}: {exc}", err=True)
            first_error = first_error or exc
            continue
        if answer:
            jobs.append(answer)
    finish(client, jobs, wait=wait, as_json=as_json, wait_timeout=wait_timeout, first_error=first_error)


def parse_value(text: str):
    """``4`` -> 4, ``true`` -> True, ``["cdrom","disk"]`` -> a list; anything else stays a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def pairs(values, *, option: str) -> dict:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"{option} {item!r}: expected KEY=VALUE", EXIT_INVALID)
        out[key.strip()] = value
    return out


def vm_edit(settings, ref, name, description, vcpus, max_vcpus, memory, max_memory, sets, as_json):
    """Change a VM's settings. Runtime settings of a running VM wait for its next stop and start."""
    client = settings.client()
    body = {k: parse_value(v) for k, v in pairs(sets, option="--set").items()}
    named = {
        "name": name,
        "description": description,
        "vcpus": vcpus,
        "max_vcpus": max_vcpus,
        "memory_mib": memory,
        "max_memory_mib": max_memory,
    }
    body.update({k: v for k, v in named.items() if v is not None})
    if not body:
        raise CliError("nothing to change: give --vcpus, --memory, --set KEY=VALUE...", EXIT_INVALID)
    vm = client.find("vms", ref, what="VM", search=True)
    updated = client.patch(f"vms/{vm['id']}/", body)
    detail(updated, as_json=as_json)
    if updated.get("pending_changes") and not as_json:
        note(f"pending until the next stop and start: {', '.join(sorted(updated['pending_changes']))}")


def vm_message(settings, refs, messages, hidden, wait, wait_timeout, as_json):
    """Send key=value messages into running guests (seed 7.10)."""
    sent = [{"key": k, "value": v, "hidden": hidden} for k, v in pairs(messages, option="-m").items()]
    if not sent:
        raise CliError("no message: give -m KEY=VALUE", EXIT_INVALID)
    body = {"messages": sent}
    run_on_vms(settings, refs, lambda vm: body, path="messages", wait=wait, as_json=as_json, wait_timeout=wait_timeout)


def server_discover(settings, host, transport, port, user, password_stdin, key_file, fingerprint, name, pool_ref, **kw):
    """Discover a server over SSH (its host key pinned by --fingerprint) or this machine (--transport local)."""
    client = settings.client()
    body = {"hostname": host, "transport": transport, "ssh_port": port, "ssh_user": user}
    if password_stdin:
        body["password"] = sys.stdin.readline().rstrip("\n")
    if key_file:
        body["private_key"] = key_file.read()
    extra = {
        "host_key_fingerprint": fingerprint,
        "name": name,
        "server_pool": client.find_id("server-pools", pool_ref, what="server pool"),
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    if kw["rediscover"]:
        body["rediscover"] = True
    job = client.post("servers/discover/", body)
    finish(client, [job], wait=kw["wait"], as_json=kw["as_json"], wait_timeout=kw["wait_timeout"])


def iso_import(settings, url, repo_ref, wait, wait_timeout, as_json):
    """Import an ISO file from an HTTP or FTP URL into a repository."""
    client = settings.client()
    body = {"url": url, "repository": client.find_id("repositories", repo_ref, what="repository")}
    finish(client, [client.post("iso-files/import/", body)], wait=wait, as_json=as_json, wait_timeout=wait_timeout)


def job_abort(settings, job_ids, as_json):
    """Ask jobs to stop (a running job stops at its next step)."""
    client = settings.client()
    rows = [client.post(f"jobs/{pk}/abort/") for pk in job_ids]
    if as_json:
        from .output import print_json

        print_json(rows)
    for row in rows:
        note(f"job {row['id']}: abort requested ({row['status']})")


def register(listings) -> None:
    """Add these commands to the groups of ``listings``."""
    vm, server, iso, job = listings.vm, listings.server, listings.iso, listings.job
    for name, doc in POWER.items():
        vm.add_command(_power(name, doc))
    with_wait = [wait_option, timeout_option, json_option, click.pass_obj]
    _add(
        vm,
        vm_migrate,
        "migrate",
        click.argument("refs", nargs=-1, required=True, metavar="VM..."),
        click.option("--server", "server_ref", metavar="NAME|ID", help="Target server (running VMs)."),
        click.option("--pool", "pool_ref", metavar="NAME|ID", help="Target pool (stopped VMs)."),
        click.option("--repository", "repo_ref", metavar="NAME|ID", help="Where disks of local repositories go."),
        *with_wait,
    )
    _add(
        vm,
        vm_clone,
        "clone",
        click.argument("ref", metavar="VM"),
        click.option("--name", "new_name", required=True, help="The new VM's name."),
        click.option("--pool", "pool_ref", metavar="NAME|ID", help="Its server pool."),
        click.option("--customizer", "customizer_ref", metavar="NAME|ID", help="A clone customizer."),
        click.option("--template", is_flag=True, help="Make a template."),
        *with_wait,
    )
    _add(
        vm,
        vm_move,
        "move",
        click.argument("refs", nargs=-1, required=True, metavar="VM..."),
        click.option("--repository", "repo_ref", metavar="NAME|ID", help="Target repository for everything."),
        click.option("--customizer", "customizer_ref", metavar="NAME|ID", help="A clone customizer, per disk."),
        *with_wait,
    )
    _add(
        vm,
        vm_delete,
        "delete",
        click.argument("refs", nargs=-1, required=True, metavar="VM..."),
        click.option("--yes", "-y", is_flag=True, help="Do not ask."),
        *with_wait,
    )
    _add(
        vm,
        vm_edit,
        "edit",
        click.argument("ref", metavar="VM"),
        click.option("--name"),
        click.option("--description"),
        click.option("--vcpus", type=int),
        click.option("--max-vcpus", type=int),
        click.option("--memory", type=int, help="MiB."),
        click.option("--max-memory", type=int, help="MiB."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Any other field (JSON values)."),
        json_option,
        click.pass_obj,
    )
    _add(
        vm,
        vm_message,
        "message",
        click.argument("refs", nargs=-1, required=True, metavar="VM..."),
        click.option("-m", "messages", multiple=True, metavar="KEY=VALUE", help="A message (repeatable)."),
        click.option("--hidden", is_flag=True, help="Keep the values out of logs and job records."),
        *with_wait,
    )
    _add(
        server,
        server_discover,
        "discover",
        click.argument("host"),
        click.option("--transport", type=click.Choice(["ssh", "local"]), default="ssh", show_default=True),
        click.option("--port", type=int, default=22, show_default=True),
        click.option("--user", default="root", show_default=True),
        click.option("--password-stdin", is_flag=True, help="Read the SSH password from standard input."),
        click.option("--key-file", type=click.File("r"), help="An SSH private key file."),
        click.option("--fingerprint", help="The host key's SHA256 fingerprint (pinned)."),
        click.option("--name", help="The server's name (default: its host name)."),
        click.option("--pool", "pool_ref", metavar="NAME|ID", help="Put it in this pool."),
        click.option("--rediscover", is_flag=True, help="Read a known server again."),
        *with_wait,
    )
    _add(
        iso,
        iso_import,
        "import",
        click.argument("url"),
        click.option("--repository", "repo_ref", required=True, metavar="NAME|ID"),
        *with_wait,
    )
    _add(job, job_abort, "abort", click.argument("job_ids", nargs=-1, required=True, type=int), json_option)


def _add(group, function, name, *decorators) -> None:
    command = function
    for decorate in reversed(decorators):
        command = decorate(command)
    if not any(d is click.pass_obj for d in decorators):
        command = click.pass_obj(command)
    group.add_command(click.command(name=name, help=function.__doc__)(command))
