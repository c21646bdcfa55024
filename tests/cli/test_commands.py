"""The command tree and the one-line errors, without a server."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from ovmweb.cli.client import Client, CliError, flatten_errors
from ovmweb.cli.main import cli


def _commands(group: click.Group, prefix=()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


ISSUE_COMMANDS = [
    ("vm", action)
    for action in [
        "start",
        "stop",
        "restart",
        "kill",
        "suspend",
        "resume",
        "migrate",
        "clone",
        "move",
        "export",
        "delete",
        "edit",
        "message",
        "console",
    ]
] + [("server", "discover"), ("iso", "import"), ("job", "watch")]


def test_every_command_the_issue_names_exists():
    assert set(ISSUE_COMMANDS) <= set(_commands(cli))
    for kind in ("server", "pool", "repository", "network", "vm", "job", "event"):
        assert {(kind, "list"), (kind, "show")} <= set(_commands(cli))


@pytest.mark.parametrize("path", sorted(_commands(cli)))
def test_help_of_every_command(path):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output


def test_plural_aliases():
    result = CliRunner().invoke(cli, ["jobs", "watch", "--help"])
    assert result.exit_code == 0 and "live feed" in result.output


def test_field_errors_become_one_line_each_with_their_path():
    body = {"vcpus": ["Ensure this value is greater than or equal to 1."], "messages": [{}, {"key": ["Required."]}]}
    assert flatten_errors(body) == [
        "vcpus: Ensure this value is greater than or equal to 1.",
        "messages[1].key: Required.",
    ]
    assert flatten_errors({"detail": "'web01' is RUNNING."}) == ["'web01' is RUNNING."]
    assert flatten_errors({"non_field_errors": ["Give exactly one."]}) == ["Give exactly one."]


def test_a_url_that_is_not_a_server_is_a_usage_error():
    with pytest.raises(CliError) as caught:
        Client("ovm.example.com")
    assert caught.value.code == 2
    client = Client("https://ovm.example.com:8443/")
    assert client.origin == "https://ovm.example.com:8443"
    assert client.ws_url("/ws/live/") == "wss://ovm.example.com:8443/ws/live/"
