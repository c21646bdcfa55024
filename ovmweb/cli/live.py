"""The two WebSocket commands: ``vm console NAME --serial`` and ``jobs watch``.

Both open the sockets the browser opens, with what the server checks of a browser:
an Origin naming the site itself, and the user (here by ``Authorization: Token``,
which a browser cannot send, instead of a session cookie). The console also takes
a single-use ticket from ``POST /api/v1/vms/{id}/console-tickets/``, as the page does."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from urllib.parse import urlsplit

import click
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from .client import EXIT_AUTH, EXIT_UNREACHABLE, EXIT_USAGE, Client, CliError
from .output import json_option, note, out, styled

ESCAPE = b"\x1d"  # Ctrl-], as telnet and virsh console
CLOSE_REASONS = {4401: "not signed in", 4403: "not allowed"}


def _open(client: Client, url: str):
    return connect(
        url,
        origin=Origin(client.origin),
        additional_headers={"Authorization": f"Token {client.token}"},
        max_size=None,
        open_timeout=client.timeout,
    )


def _refused(exc: Exception) -> CliError:
    if isinstance(exc, InvalidStatus):
        return CliError(f"the server refused the WebSocket (HTTP {exc.response.status_code})", EXIT_AUTH)
    return CliError(f"WebSocket failed: {exc}", EXIT_UNREACHABLE)


async def _console_to_stdout(ws) -> None:
    out_fd = sys.stdout.fileno()
    async for message in ws:
        os.write(out_fd, message if isinstance(message, bytes) else message.encode())


async def _stdin_to_console(ws, *, interactive: bool) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    fd = sys.stdin.fileno()
    loop.add_reader(fd, lambda: queue.put_nowait(os.read(fd, 4096)))
    try:
        while True:
            data = await queue.get()
            if not data:
                # Piped input ended: give the guest a moment to answer the last line, then leave.
                await asyncio.sleep(1.5)
                return
            if interactive and ESCAPE in data:
                data = data.split(ESCAPE, 1)[0]
                if data:
                    await ws.send(data)
                return
            await ws.send(data)
    finally:
        loop.remove_reader(fd)


async def _serial_session(client: Client, url: str, *, interactive: bool) -> None:
    try:
        ws = await _open(client, url)
    except (TimeoutError, InvalidStatus, OSError) as exc:
        raise _refused(exc) from None
    async with ws:
        reader = asyncio.ensure_future(_console_to_stdout(ws))
        writer = asyncio.ensure_future(_stdin_to_console(ws, interactive=interactive))
        done, pending = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await task
        for task in done:
            with contextlib.suppress(ConnectionClosed):
                task.result()
    if reader in done and ws.close_code not in (None, 1000, 1001):
        raise CliError(f"the console closed ({ws.close_code}: {ws.close_reason or 'no reason given'})", EXIT_AUTH)


@contextlib.contextmanager
def _raw_terminal(enabled: bool):
    if not enabled:
        yield
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@click.command()
@click.argument("ref", metavar="VM")
@click.option("--serial", is_flag=True, help="The serial console (the only one a terminal can show).")
@click.pass_obj
def console(settings, ref, serial):
    """Attach this terminal to a VM's serial console (Ctrl-] to leave)."""
    if not serial:
        raise CliError("a terminal shows the serial console only: add --serial (VNC is in the browser)", EXIT_USAGE)
    client = settings.client()
    vm = client.find("vms", ref, what="VM", search=True)
    ticket = client.post(f"vms/{vm['id']}/console-tickets/", {"kind": "serial"})
    # The path and ticket of the server's ws_url, on the host and scheme this client uses.
    parts = urlsplit(ticket["ws_url"])
    url = client.ws_url(f"{parts.path}?{parts.query}")
    interactive = sys.stdin.isatty()
    if interactive:
        note(f"connected to {vm['name']} ({'read-only' if ticket['read_only'] else 'read-write'}); Ctrl-] to leave")
    with _raw_terminal(interactive):
        asyncio.run(_serial_session(client, url, interactive=interactive))


def _job_line(payload: dict) -> str:
    summary = (payload.get("summary") or payload.get("operation") or "").replace("[", r"\[")
    error = f" - {payload['error'].strip().splitlines()[-1]}" if payload.get("error") else ""
    return f"job {payload['id']} {styled(payload['status'])} {payload.get('progress') or 0}% {summary}{error}"


async def _watch(client: Client, *, only: set[int], count: int | None, as_json: bool) -> None:
    try:
        ws = await _open(client, client.ws_url("/ws/live/"))
    except (TimeoutError, InvalidStatus, OSError) as exc:
        raise _refused(exc) from None
    seen = 0
    async with ws:
        try:
            async for raw in ws:
                message = json.loads(raw)
                payload = message.get("payload") or {}
                if message.get("topic") != "job" or (only and payload.get("id") not in only):
                    continue
                if as_json:
                    sys.stdout.write(json.dumps(payload, sort_keys=True) + "\n")
                    sys.stdout.flush()
                else:
                    out.print(_job_line(payload))
                seen += 1
                if count is not None and seen >= count:
                    return
        except ConnectionClosed:
            pass
    reason = CLOSE_REASONS.get(ws.close_code)
    if reason:
        raise CliError(f"the live feed closed: {reason}", EXIT_AUTH)


@click.command()
@click.option("--job", "only", multiple=True, type=int, help="Only this job (repeatable).")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many updates.")
@json_option
@click.pass_obj
def watch(settings, only, count, as_json):
    """Print job updates as they happen (the live feed), until Ctrl-C. --json: one JSON object a line."""
    client = settings.client()
    if not as_json:
        note(f"watching jobs on {client.url} (Ctrl-C to stop)")
    asyncio.run(_watch(client, only=set(only), count=count, as_json=as_json))


def register(listings) -> None:
    listings.vm.add_command(console)
    listings.job.add_command(watch)
