"""``ovmweb``: the entry point, the global options, sign-in, and the command groups.

Where the server and the token come from, first found wins: ``--url``/``--token``,
then ``OVMWEB_URL``/``OVMWEB_TOKEN``, then the file ``ovmweb login`` wrote
(``OVMWEB_CONFIG`` or ~/.config/ovmweb/config.json)."""

from __future__ import annotations

import sys

import click

from . import config
from .client import EXIT_INTERRUPTED, EXIT_USAGE, Client, CliError
from .output import note

# Plural and short names of the command groups ("ovmweb vms list" = "ovmweb vm list").
ALIASES = {
    "servers": "server",
    "pools": "pool",
    "repositories": "repository",
    "repo": "repository",
    "networks": "network",
    "vms": "vm",
    "jobs": "job",
    "events": "event",
    "isos": "iso",
}


class Group(click.Group):
    """Every error of the command line ends here: one line on stderr, and the exit code of its kind."""

    def get_command(self, ctx, cmd_name):
        return super().get_command(ctx, ALIASES.get(cmd_name, cmd_name))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CliError as exc:
            click.echo(f"ovmweb: {exc}", err=True)
            ctx.exit(exc.code)
        except KeyboardInterrupt:
            click.echo("ovmweb: interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)


class Settings:
    def __init__(self, url: str | None, token: str | None, timeout: float):
        stored = config.load()
        self.url = url or stored.get("url")
        self.token = token or (stored.get("token") if not url or url == stored.get("url") else None)
        self.timeout = timeout
        self._client = None

    def client(self) -> Client:
        if self._client is None:
            if not self.url:
                raise CliError("no server: give --url, set OVMWEB_URL, or run: ovmweb login URL", EXIT_USAGE)
            if not self.token:
                raise CliError(f"not signed in to {self.url}: set OVMWEB_TOKEN or run: ovmweb login", EXIT_USAGE)
            self._client = Client(self.url, self.token, timeout=self.timeout)
        return self._client


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--url", envvar="OVMWEB_URL", metavar="URL", help="The ovmweb server (env OVMWEB_URL).")
@click.option("--token", envvar="OVMWEB_TOKEN", metavar="KEY", help="An API token (env OVMWEB_TOKEN).")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for each answer.")
@click.version_option(package_name="ovmweb", prog_name="ovmweb")
@click.pass_context
def cli(ctx, url, token, timeout):
    """Manage an ovmweb estate from the shell: servers, pools, repositories, networks, VMs, jobs, events.

    Objects are named by name or id. Exit codes: 0 done, 1 a job failed, 2 usage, 3 server unreachable,
    4 not signed in or not allowed, 5 not found, 6 conflict (the object's state forbids it),
    7 invalid input, 8 server error, 130 interrupted."""
    ctx.obj = Settings(url, token, timeout)


@cli.command()
@click.argument("url", required=False)
@click.option("--username", "-u", prompt=True, help="Your ovmweb user name.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (for scripts).")
@click.option("--name", default="", help="A name for the token (shown in the admin).")
@click.pass_obj
def login(settings: Settings, url, username, password_stdin, name):
    """Sign in with a user name and password; the API token is kept in the config file (mode 0600)."""
    url = url or settings.url
    if not url:
        raise CliError("which server? run: ovmweb login URL", EXIT_USAGE)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True)
    client = Client(url, timeout=settings.timeout)
    answer = client.post("tokens/", {"username": username, "password": password, "name": name})
    path = config.save({"url": client.url, "token": answer["token"], "username": answer["username"]})
    note(f"signed in to {client.url} as {answer['username']}; token saved in {path}")


@cli.command()
def logout():
    """Forget the stored token (the server keeps it until revoked in the admin)."""
    stored = config.load()
    if stored.pop("token", None) is None:
        note("not signed in")
        return
    config.save(stored)
    note(f"token removed from {config.config_path()}")


def _register() -> None:
    from . import actions, listings, live

    for group in (listings.server, listings.pool, listings.repository, listings.network):
        cli.add_command(group)
    for group in (listings.vm, listings.job, listings.event, listings.iso):
        cli.add_command(group)
    actions.register(listings)
    live.register(listings)


_register()


def main() -> None:
    cli(prog_name="ovmweb")
