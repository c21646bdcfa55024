"""The arrows between packages point down (docs/architecture.md): web, api, consoles and
monitor -> inventory -> jobs and hypervisor -> tunnels -> ovmweb.errors.

Read from the source with ``ast``, every import counts, including those inside
functions: a lazy import is still an arrow."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "ovmweb"
TOP = {"api", "web", "consoles", "monitor", "audit"}

# package -> the packages it must never import
FORBIDDEN = {
    "errors": {"core", "inventory", "jobs", "hypervisor", "tunnels", *TOP},
    "tunnels": {"core", "inventory", "jobs", "hypervisor", *TOP},
    "hypervisor": {"core", "inventory", "jobs", *TOP},
    "jobs": {"inventory", *TOP},
    "inventory": {"api", "web", "consoles", "monitor", "audit"},
    "monitor": {"api", "web", "consoles"},
    # core's admin base classes sit below every admin; only its entry points (management) reach up
    "core": {"inventory", "jobs", "hypervisor", "tunnels", *TOP},
    "accounts": {"inventory", "jobs", "hypervisor", "tunnels", *TOP},
    # audit sits above inventory and jobs; consoles, web and api call it, it calls none of them
    "audit": {"api", "web", "consoles", "monitor"},
    # metrics sits beside monitor: the monitor calls its sampler, the API its views
    "metrics": {"web", "consoles", "monitor", "audit"},
}
# Nothing below the metrics may import them.
for _below in ("errors", "tunnels", "hypervisor", "jobs", "inventory", "core", "accounts"):
    FORBIDDEN[_below] = FORBIDDEN[_below] | {"metrics"}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """Every module this file imports, absolute, with its line."""
    module = _module_name(path, root)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            # `from ovmweb import inventory` names a package too
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names if name == "ovmweb"]
    return found


def violations(root: Path = ROOT) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if "migrations" in rel.parts:
            continue
        package = rel.parts[0].removesuffix(".py")
        if package == "core" and "management" in rel.parts:
            continue  # the process entry points start everything
        forbidden = FORBIDDEN.get(package, set())
        for line, name in _imports(path, root):
            parts = name.split(".")
            if len(parts) > 1 and parts[0] == "ovmweb" and parts[1] in forbidden:
                found.append(f"ovmweb/{rel}:{line} imports {name}")
    return found


def test_no_package_imports_one_above_it():
    assert violations() == []


@pytest.mark.parametrize(
    ("package", "source"),
    [
        ("hypervisor", "from ovmweb.inventory.models import VirtualMachine\n"),
        ("tunnels", "def f():\n    from ovmweb.hypervisor.base import Driver\n"),
        ("inventory", "from ovmweb.api import serializers\n"),
        ("jobs", "from ovmweb import inventory\n"),
        ("hypervisor", "def f():\n    from ovmweb.metrics.series import TIERS\n"),
        ("jobs", "from ovmweb.metrics import models\n"),
    ],
)
def test_the_check_sees_an_upward_import(package, source, tmp_path):
    """The guard itself: a file with an upward import, placed in the package, is caught."""
    probe = tmp_path / "ovmweb" / package / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text(source)
    (found,) = violations(tmp_path / "ovmweb")
    assert found.startswith(f"ovmweb/{package}/probe.py:")


# The command line is a client of the REST API and the WebSockets, like any other.
CLI_FORBIDDEN_TOP = {"django", "rest_framework", "channels", "daphne", "libvirt", "paramiko"}


def cli_violations(root: Path = ROOT) -> list[str]:
    """Imports of ovmweb/cli that reach the server: any ovmweb package but cli, or Django and friends."""
    found = []
    for path in sorted((root / "cli").rglob("*.py")):
        for line, name in _imports(path, root):
            parts = name.split(".")
            if (parts[0] == "ovmweb" and len(parts) > 1 and parts[1] != "cli") or parts[0] in CLI_FORBIDDEN_TOP:
                found.append(f"ovmweb/{path.relative_to(root)}:{line} imports {name}")
    return found


def test_the_command_line_imports_nothing_of_the_server():
    assert (ROOT / "cli" / "main.py").exists()
    assert cli_violations() == []


def test_the_cli_check_sees_a_server_import(tmp_path):
    probe = tmp_path / "ovmweb" / "cli" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("def f():\n    from ovmweb.inventory import selectors\n    import django\n")
    assert len(cli_violations(tmp_path / "ovmweb")) == 2
