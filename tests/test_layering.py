"""The package's import graph has no cycles, counting every import statement (function-level and TYPE_CHECKING
ones included), and preparing a job does not import stage code."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "offline_speech"


def modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / PACKAGE).rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules `path` imports anywhere in it (a from-import of a name counts its module)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package[: len(package) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            out |= {base} | {f"{base}.{a.name}" for a in node.names}
    return {m for m in out if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_cycles():
    edges = graph()
    assert len(edges) > 60, "the scan found the package's modules"
    assert cycles(edges) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for module in edges[todo.pop()] - seen:
            seen.add(module)
            todo.append(module)
    return seen


def test_preparing_a_job_loads_no_stage_code():
    """Only the runner<->stage contract (stages.base: request and event types) is shared with the core venv."""
    edges = graph()
    for name in (f"{PACKAGE}.jobs", f"{PACKAGE}.cli.prepare_job", f"{PACKAGE}.pipeline.runner"):
        stages = {m for m in reachable(edges, name) if m.startswith(f"{PACKAGE}.stages")}
        assert stages <= {f"{PACKAGE}.stages.base"}, name


def test_every_mode_has_a_handler_and_every_outcome_a_renderer():
    import typing

    from offline_speech.cli.cache_models import RENDERERS
    from offline_speech.provisioning import outcomes, service

    assert set(service.MODES) == set(service.Mode)
    assert set(RENDERERS) == set(typing.get_args(outcomes.Outcome))
