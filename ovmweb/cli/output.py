"""Tables for people (rich), JSON for scripts. Tables and JSON go to stdout;
progress bars, notes and errors to stderr, so ``--json | jq`` always parses."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable

import click
from rich.console import Console
from rich.table import Table

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)

STATUS_STYLES = {
    "RUNNING": "green",
    "SUCCESS": "green",
    "STOPPED": "dim",
    "QUEUED": "cyan",
    "STARTING": "cyan",
    "STOPPING": "cyan",
    "SUSPENDED": "yellow",
    "WARNING": "yellow",
    "FAILURE": "red",
    "ABORTED": "red",
    "ERROR": "red",
    "CRITICAL": "bold red",
}

# A column: (heading, how to read it from a row).
Column = tuple[str, Callable[[dict], object]]

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table.")


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def styled(value) -> str:
    text = "-" if value is None or value == "" else str(value)
    style = STATUS_STYLES.get(text)
    return f"[{style}]{text}[/]" if style else text.replace("[", r"\[")


def table(rows: Iterable[dict], columns: list[Column], *, as_json: bool, title: str | None = None) -> int:
    """Print ``rows``; the number printed."""
    rows = list(rows)
    if as_json:
        print_json(rows)
        return len(rows)
    grid = Table(title=title, header_style="bold", show_edge=False, pad_edge=False)
    for heading, _read in columns:
        grid.add_column(heading, overflow="fold")
    for row in rows:
        grid.add_row(*(styled(read(row)) for _heading, read in columns))
    out.print(grid)
    return len(rows)


def detail(obj: dict, *, as_json: bool) -> None:
    if as_json:
        print_json(obj)
        return
    grid = Table(show_header=False, show_edge=False, pad_edge=False, box=None)
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for key, value in obj.items():
        if isinstance(value, list | dict):
            value = json.dumps(value) if value else "-"
        grid.add_row(key, styled(value))
    out.print(grid)


def note(message: str) -> None:
    err.print(message, markup=False)


def mib(value) -> str:
    return "-" if value is None else f"{value} MiB"


def gib(value) -> str:
    return "-" if value is None else f"{value / (1 << 30):.1f} GiB"
