"""core/'s shape, read from its imports: no cycles between modules or rooms, and ports import no SDK.

A port (``_port.py``) is the narrow seam between the core and one outside system; if it pulled in
an SDK, every user of the seam would load (and depend on) that SDK, and tests could no longer
replace the adapter. The walk follows module-level imports transitively, the way Python loads them.
"""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "core"
# Clients of outside systems (Azure OpenAI, Azure services, HTTP, gRPC, web frameworks).
SDKS = {"openai", "azure", "aiohttp", "httpx", "httpx2", "grpc", "fastapi", "starlette"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(name: str) -> bool:
    return (CORE.parent / name.replace(".", "/") / "__init__.py").exists()


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(encoding="utf-8")) for p in CORE.rglob("*.py")}


def _imports(name: str, tree: ast.Module) -> tuple[set[str], set[str]]:
    """(core modules, outside top-level packages) imported at module level by ``name``."""
    package = name if _is_package(name) else name.rpartition(".")[0]
    inside: set[str] = set()
    outside: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                (inside if alias.name.split(".")[0] == "core" else outside).add(
                    alias.name if alias.name.startswith("core") else alias.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if not target.startswith("core"):
                outside.add(target.split(".")[0])
                continue
            inside.add(target)
            for alias in node.names:  # `from . import _x` imports a module
                if _is_package(target) and (CORE.parent / target.replace(".", "/") / f"{alias.name}.py").exists():
                    inside.add(f"{target}.{alias.name}")
    return inside, outside


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    modules = _modules()
    edges: dict[str, set[str]] = {}
    outside: dict[str, set[str]] = {}
    for name, tree in modules.items():
        inside, foreign = _imports(name, tree)
        # Importing a.b.c runs a/__init__ and a/b/__init__ first.
        loaded = set(inside)
        for target in inside:
            parts = target.split(".")
            loaded.update(".".join(parts[:i]) for i in range(1, len(parts)))
        edges[name] = {m for m in loaded if m in modules and m != name}
        outside[name] = foreign
    return edges, outside


def _cycle(edges: dict[str, set[str]]) -> list[str]:
    """One cycle of ``edges`` (as a path), or [] when there is none."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return []

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return []


def _room(module: str) -> str:
    """core.config._models -> core.config; core._gateway -> core._gateway."""
    return ".".join(module.split(".")[:2])


def test_modules_import_no_cycle() -> None:
    edges, _ = _graph()
    # A package's __init__ importing its own modules is how packages work, not a cycle of concepts.
    own = {m: {t for t in ts if not (m.count(".") == 1 and t.startswith(m + "."))} for m, ts in edges.items()}
    assert _cycle({m: ts for m, ts in own.items() if m != "core"}) == []


def test_rooms_import_no_cycle() -> None:
    edges, _ = _graph()
    rooms: dict[str, set[str]] = {}
    for module, targets in edges.items():
        if module == "core":  # the facade re-exports every room
            continue
        room = _room(module)
        rooms.setdefault(room, set()).update(_room(t) for t in targets if _room(t) not in (room, "core"))
    assert _cycle(rooms) == []


def test_ports_import_no_sdk() -> None:
    edges, outside = _graph()
    ports = sorted(m for m in edges if m.endswith("._port"))
    assert {"core.config._port", "core.state._port", "core.upstream._port"} <= set(ports)
    for port in ports:
        seen, todo = {port}, [port]
        while todo:
            for nxt in edges[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        loaded = {pkg for module in seen for pkg in outside[module]}
        assert not loaded & SDKS, f"{port} loads {sorted(loaded & SDKS)} through {sorted(seen)}"


def test_the_walk_sees_a_cycle_and_an_sdk_when_there_is_one() -> None:
    """The checks above can fail: the same functions flag a planted cycle and a planted SDK import."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    tree = ast.parse("import openai\nfrom ..config import Settings\n")
    inside, foreign = _imports("core.upstream._port", tree)
    assert foreign == {"openai"} and inside == {"core.config"}
