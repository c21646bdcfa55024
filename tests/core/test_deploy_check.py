"""`manage.py check --deploy` under the production settings finds nothing to say."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def check_deploy(tmp_path, **extra) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OVMWEB_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="ovmweb.settings.production",
        OVMWEB_SECRET_KEY=secrets.token_urlsafe(60),
        OVMWEB_ALLOWED_HOSTS="ovm.example.com",
        OVMWEB_VAR_DIR=str(tmp_path / "var"),
        **extra,
    )
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_the_deploy_check(tmp_path):
    result = check_deploy(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_the_check_does_look_without_tls(tmp_path):
    # The switch for a plain-HTTP bench: the check then says what is missing.
    result = check_deploy(tmp_path, OVMWEB_HTTPS="false")
    assert result.returncode != 0
    assert "security.W008" in result.stderr and "security.W012" in result.stderr
