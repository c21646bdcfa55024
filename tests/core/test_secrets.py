"""The state directory and the secret key in it are private, and the key is made once."""

import os
import subprocess
import sys
import threading
from pathlib import Path

from ovmweb.settings import var_dir

ROOT = Path(__file__).resolve().parent.parent.parent


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_fresh_var_dir_and_what_the_process_creates_in_it_are_private(tmp_path):
    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OVMWEB_", "DJANGO_"))}
    env.update(DJANGO_SETTINGS_MODULE="ovmweb.settings.base", OVMWEB_VAR_DIR=str(var))
    script = (
        "import django; django.setup()\n"
        "from django.conf import settings; from django.db import connection\n"
        "connection.cursor().execute('CREATE TABLE t (x integer)')\n"
        "(settings.VAR_DIR / 'upload.bin').write_bytes(b'x')\n"
        "(settings.VAR_DIR / 'ssh').mkdir()\n"
    )
    # A permissive umask in the parent: the settings must tighten it themselves.
    subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, check=True, timeout=120, preexec_fn=lambda: os.umask(0o022)
    )
    assert mode(var) == 0o700
    assert mode(var / "secret_key") == 0o600
    assert mode(var / "ovmweb.sqlite3") == 0o600
    assert mode(var / "upload.bin") == 0o600
    assert mode(var / "ssh") == 0o700


def test_an_existing_var_dir_is_tightened_and_its_key_reused(tmp_path):
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    var.chmod(0o755)
    (var / "secret_key").write_text("an-existing-key\n")
    (var / "secret_key").chmod(0o644)
    (var / "ovmweb.sqlite3").write_bytes(b"")
    (var / "ovmweb.sqlite3").chmod(0o664)
    (var / "repositories").mkdir()
    (var / "repositories").chmod(0o755)

    var_dir.prepare_var_dir(var)

    assert mode(var) == 0o700
    assert mode(var / "secret_key") == 0o600
    assert mode(var / "ovmweb.sqlite3") == 0o600
    assert mode(var / "repositories") == 0o700
    assert var_dir.read_or_create_secret_key(var / "secret_key") == "an-existing-key"


def test_a_new_key_is_private_from_the_start(tmp_path, monkeypatch):
    seen = []
    real_link = os.link

    def link(src, dst):
        seen.append(mode(Path(src)))  # the file as it is when it gets its name
        real_link(src, dst)

    monkeypatch.setattr(os, "link", link)
    old = os.umask(0o000)  # even under a umask that hides nothing
    try:
        key = var_dir.read_or_create_secret_key(tmp_path / "secret_key")
    finally:
        os.umask(old)
    assert seen == [0o600] and mode(tmp_path / "secret_key") == 0o600
    assert len(key) >= 50 and (tmp_path / "secret_key").read_text() == key
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]  # no temporary file left


def test_the_loser_of_a_race_takes_the_winners_key(tmp_path, monkeypatch):
    path = tmp_path / "secret_key"
    real_link = os.link

    def link(src, dst):
        path.write_text("the-winners-key")  # another process got there between our read and our link
        real_link(src, dst)

    monkeypatch.setattr(os, "link", link)
    assert var_dir.read_or_create_secret_key(path) == "the-winners-key"
    assert path.read_text() == "the-winners-key"
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]


def test_racing_creators_end_with_one_key(tmp_path):
    path = tmp_path / "secret_key"
    start = threading.Barrier(8)
    keys = []

    def create():
        start.wait()
        keys.append(var_dir.read_or_create_secret_key(path))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and set(keys) == {path.read_text()}
