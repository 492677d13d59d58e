"""Folders are layers and imports only point down (read from the code with `ast`, no import needed).

apps (cli -> api -> ui) -> services -> graphs -> nodes -> tools, prompts -> domain -> memory, accounts -> serving.
Domain packages (personas, safety, twins, crm, insight) may use each other but never a layer above;
apps reach graphs and nodes only through services;
no graph imports another graph; the product never imports evals, bench, scripts or tests; every
import of the product goes through the `personagraph` namespace; and no two modules import each
other, directly or round a longer loop (imports inside functions count too: a lazy import that
hides a cycle is still a cycle).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

RANK = {
    "serving": 0,
    "memory": 1,
    "accounts": 1,
    "personas": 2,
    "safety": 2,
    "twins": 2,
    "crm": 2,
    "insight": 2,
    "prompts": 3,
    "tools": 3,
    "nodes": 4,
    "graphs": 5,
    "services": 6,
    "ui": 7,
    "api": 8,
    "cli": 9,
}
APPS = ("ui", "api", "cli")  # through services only: they never run a graph or call a node themselves
NOT_PRODUCT = ("evals", "bench", "scripts", "tests")
PREFIX = "personagraph."


def _product_modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for folder in RANK:
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in the file, wherever it sits."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from personagraph.nodes import retrieval` imports the submodule too
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


MODULES = _product_modules()


def _target(name: str) -> str | None:
    """The product module an import name refers to (longest known prefix), or None if outside."""
    if not name.startswith(PREFIX):
        return None
    parts = name[len(PREFIX) :].split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return None


def _edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in MODULES.items():
        for _, name in _imports(path):
            target = _target(name)
            if target and target != module:
                graph[module].add(target)
    return graph


def test_every_layer_folder_exists() -> None:
    assert {m.split(".")[0] for m in MODULES} == set(RANK)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    layer = module.split(".")[0]
    problems = []
    for line, name in _imports(MODULES[module]):
        top = name.split(".")[0]
        if top in NOT_PRODUCT:
            problems.append(f"line {line}: the product imports {top}/ (`{name}`)")
            continue
        if top in RANK:
            problems.append(f"line {line}: bare `{name}` (import it as {PREFIX}{name})")
            continue
        target = _target(name)
        if target is None:
            continue
        other = target.split(".")[0]
        if RANK[other] > RANK[layer]:
            problems.append(
                f"line {line}: {layer} (layer {RANK[layer]}) imports {target} (layer {RANK[other]})"
            )
        elif layer in APPS and other in ("graphs", "nodes"):
            problems.append(f"line {line}: an app reaches past the services into {target}")
        elif layer == "graphs" and other == "graphs" and target != module:
            problems.append(f"line {line}: graph imports another graph ({target})")
        elif RANK[other] == RANK[layer] and other != layer and RANK[layer] != 2:
            problems.append(f"line {line}: {layer} imports its sibling layer {other}")
    assert not problems, f"{module}:\n" + "\n".join(dict.fromkeys(problems))


@pytest.mark.parametrize("folder", ["evals", "bench", "scripts"])
def test_evals_and_benchmarks_go_through_services(folder: str) -> None:
    problems = [
        f"{path.relative_to(REPO)} line {line}: {name}"
        for path in sorted((REPO / folder).rglob("*.py"))
        for line, name in _imports(path)
        if (_target(name) or "").split(".")[0] in ("graphs", "nodes", "ui", "cli")
    ]
    assert not problems, "\n".join(dict.fromkeys(problems))


def test_no_import_cycles() -> None:
    graph = _edges()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_checks_catch_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: an upward import in a domain module is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from personagraph.nodes.draft import draft\nimport serving.settings\n", encoding="utf-8")
    names = [name for _, name in _imports(bad)]
    assert "personagraph.nodes.draft" in names and "serving.settings" in names
    target = _target("personagraph.nodes.draft.draft")
    assert target == "nodes.draft" and RANK["nodes"] > RANK["twins"]
