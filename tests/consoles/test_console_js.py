"""The console pages' pure logic, run in node: paste modifiers per VM keymap, the bounded reconnect."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "static" / "consoles"


def node(script: str):
    # node comes with the npm toolchain the console pages' vendored noVNC/xterm need.
    out = subprocess.run(
        [shutil.which("node") or "node", "-e", script], check=True, capture_output=True, text=True, timeout=30
    )
    return json.loads(out.stdout)


def modifiers(keymap: str, text: str) -> list[str]:
    """For each character: "" (plain), "S" (Shift), "G" (AltGr)."""
    script = (
        f"const k = require({json.dumps(str(STATIC / 'keymaps.js'))});"
        f"console.log(JSON.stringify([...{json.dumps(text)}].map((c) => {{"
        f"const m = k.modifiersFor({json.dumps(keymap)}, c); return (m.shift ? 'S' : '') + (m.altgr ? 'G' : ''); }})));"
    )
    return node(script)


@pytest.mark.parametrize(
    ("keymap", "text", "expected"),
    [
        ("en-us", 'aA1!@"', ["", "S", "", "S", "S", "S"]),
        ("en-gb", '@"#~£', ["S", "S", "", "S", "S"]),
        # German: Shift+0 is "=", ")" is Shift+9, "@" and braces are AltGr, "z"/"y" plain.
        ("de", "=)@{zY/", ["S", "S", "G", "G", "", "S", "S"]),
        # French AZERTY: digits need Shift, "&" does not, "@" and "#" are AltGr.
        ("fr", "1&@#aM.", ["S", "", "G", "G", "", "S", "S"]),
    ],
)
def test_paste_modifiers_follow_the_vm_keymap(keymap, text, expected):
    assert modifiers(keymap, text) == expected


def test_unknown_keymap_types_as_us():
    assert modifiers("sv", "!a") == modifiers("en-us", "!a")


def test_reconnect_stops_after_its_attempts():
    script = (
        f"const c = require({json.dumps(str(STATIC / 'console.js'))});"
        "console.log(JSON.stringify({max: c.MAX_ATTEMPTS, plans: [1,2,3,4,5,6,7].map(c.reconnectPlan)}));"
    )
    result = node(script)
    plans = result["plans"]
    assert result["max"] == 5
    assert [p["giveUp"] for p in plans] == [False] * 5 + [True, True]
    assert [p["delay"] for p in plans[:5]] == [1000, 2000, 4000, 8000, 8000]


def test_the_page_names_the_other_viewers_not_itself():
    viewers = [
        {"username": "alice", "read_only": False, "sessions": 2},
        {"username": "bob", "read_only": True, "sessions": 1},
    ]
    script = (
        f"const c = require({json.dumps(str(STATIC / 'console.js'))});"
        f"const v = {json.dumps(viewers)};"
        "console.log(JSON.stringify([c.othersText(v, 'alice'), c.othersText(v.slice(0, 1), 'bob'),"
        " c.othersText([{username: 'alice', read_only: false, sessions: 1}], 'alice')]));"
    )
    assert node(script) == ["Also connected: alice, bob (view only)", "Also connected: alice", ""]
