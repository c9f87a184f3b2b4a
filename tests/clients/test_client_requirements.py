"""The console client works after ``scripts/run-local.sh`` with no second install step: every
package ``clients/cli`` imports is pinned in what run-local's bootstrap installs."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pinned(path: Path) -> set[str]:
    names: set[str] = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            names |= pinned(path.parent / line[3:].strip())
        elif line:
            names.add(re.split(r"[=<>\[;]", line)[0].strip().lower().replace("_", "-"))
    return names


def imported_top_levels() -> set[str]:
    found: set[str] = set()
    for source in (ROOT / "clients" / "cli").glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"clients", "protos", "__future__"}


def test_run_local_installs_every_package_the_console_client_imports():
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    assert "req=requirements-client.txt" in bootstrap  # what bootstrap (no --dev) installs
    assert "bash scripts/bootstrap.sh\n" in (ROOT / "scripts" / "run-local.sh").read_text()
    installed = pinned(ROOT / "requirements-client.txt")
    distributions = packages_distributions()
    missing = {}
    for module in imported_top_levels():
        dists = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        if not dists & installed:
            missing[module] = dists
    assert {"typer", "rich", "httpx", "grpc"} <= imported_top_levels()
    assert not missing, f"clients/cli imports packages run-local does not install: {missing}"
