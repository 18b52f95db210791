"""The project's modules import one way: no cycle among them, and the layer rules below.

The graph is read from the source with ``ast``; the folders map to their installed names
(slm_tasks/ -> slm_tasks, adapters/ -> slm_tasks.adapters, leaderboards/ -> slm_tasks.leaderboards).
An import inside a function counts as one at the top: it runs too, only later.
``from P import x`` is an import of P and, where P.x is one of our modules, of P.x. A package's
``__init__`` that Python runs before any module inside it is not an edge (every module would
depend on it); what that ``__init__`` imports is.

The layers, bottom up (docs/architecture.md, "Layers"):

* leaves - import nothing of ours: errors, paths (the task folder), icl (the ICL names);
* tasks - what lm-eval loads with the YAMLs: data, datacheck, fewshot, activation, ...;
* results (slm_tasks.results) - files, samples, statistics, the ICL gain: leaves only;
* adapters (slm_tasks.adapters) - the backends; the base knows nothing of the cluster;
* leaderboards (slm_tasks.leaderboards) - boards and the gate;
* the edge - the command line and the Python API (cli, api, run_plan, run_output, ...).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"slm_tasks": "slm_tasks", "adapters": "slm_tasks.adapters", "leaderboards": "slm_tasks.leaderboards"}
LEAVES = {"slm_tasks", "slm_tasks.errors", "slm_tasks.paths", "slm_tasks.icl"}
TASK_LAYER = {
    "slm_tasks.activation",
    "slm_tasks.data",
    "slm_tasks.datacheck",
    "slm_tasks.fewshot",
    "slm_tasks.mmlu",
    "slm_tasks.math_utils",
    "slm_tasks.code_eval",
    "slm_tasks.icl_variants",
}
RESULTS, ADAPTERS, BOARDS = "slm_tasks.results", "slm_tasks.adapters", "slm_tasks.leaderboards"
CLUSTER = {f"{ADAPTERS}.{m}" for m in ("cluster", "cluster_pool", "cluster_connect", "cluster_worker", "make")}


def modules(root: Path = REPO, folders: dict = FOLDERS) -> dict[str, Path]:
    """Installed module name -> its source file."""
    out = {}
    for folder, package in folders.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = [p for p in path.relative_to(root / folder).with_suffix("").parts if p != "__init__"]
            name = ".".join([package, *parts])
            others = tuple(p + "." for p in folders.values() if p != package)
            if folder == "slm_tasks" and name.startswith(others):
                continue  # a wheel's copy of another folder
            out[name] = path
    return out


def imports(mods: dict[str, Path]) -> dict[str, list[tuple[str, int]]]:
    """Module -> every (module imported, line), ours or not (external names as written)."""
    graph = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                found += [(a.name, node.lineno) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module
                found.append((target, node.lineno))
                subs = [f"{target}.{a.name}" for a in node.names]
                found += [(sub, node.lineno) for sub in subs if sub in mods]
        graph[name] = found
    return graph


def ours(graph, mods) -> dict[str, dict[str, int]]:
    """Module -> {module of ours it imports: the first line that does}."""
    edges: dict[str, dict[str, int]] = {}
    for m, deps in graph.items():
        edges[m] = {}
        for t, line in deps:
            if t in mods and t != m:
                edges[m][t] = min(line, edges[m].get(t, line))
    return edges


def cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (a list of modules, first == last) per strongly connected group (Tarjan)."""
    index, low, stack, on, groups = {}, {}, [], set(), []

    def visit(v):
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
            group = set()
            while True:
                w = stack.pop()
                on.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return [_walk_back(min(g), g, edges) for g in groups]


def _walk_back(start: str, group: set[str], edges) -> list[str]:
    """A path start -> ... -> start inside ``group`` (breadth first: a shortest one)."""
    came = {start: None}
    todo = [start]
    while todo:
        v = todo.pop(0)
        for w in sorted(edges[v]):
            if w == start:
                path = [v]
                while came[path[-1]] is not None:
                    path.append(came[path[-1]])
                return [*reversed(path), start]
            if w in group and w not in came:
                came[w] = v
                todo.append(w)
    raise AssertionError(f"{start} is in a cycle but none was walked")


MODS = modules()
GRAPH = imports(MODS)
EDGES = ours(GRAPH, MODS)


def where(module: str, target: str) -> str:
    return f"{MODS[module].relative_to(REPO)}:{EDGES[module][target]} ({module} imports {target})"


def offences(selected, forbidden) -> list[str]:
    return [where(m, t) for m in sorted(MODS) if selected(m) for t in sorted(EDGES[m]) if forbidden(m, t)]


def test_the_graph_sees_every_module_and_its_imports():
    assert {"slm_tasks.cli", f"{ADAPTERS}.backend", f"{BOARDS}.board", f"{RESULTS}.stats"} <= set(MODS)
    assert f"{BOARDS}.board_icl" in EDGES[f"{BOARDS}.board"]
    assert f"{RESULTS}.icl_gain" in EDGES[f"{BOARDS}.board_icl"]  # imported inside a function


def test_no_import_cycle():
    found = cycles(EDGES)
    assert not found, "import cycles: " + " | ".join(
        " -> ".join(c) + ": " + ", ".join(where(a, b) for a, b in zip(c, c[1:])) for c in found
    )


def test_the_cycle_check_fails_on_a_cycle(tmp_path):
    pkg = tmp_path / "slm_tasks"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from slm_tasks import b\n")
    (pkg / "b.py").write_text("def f():\n    from slm_tasks.a import g\n")
    (pkg / "c.py").write_text("import slm_tasks.a\n")
    mods = modules(tmp_path, {"slm_tasks": "slm_tasks"})
    edges = ours(imports(mods), mods)
    assert edges["slm_tasks.b"] == {"slm_tasks.a": 2}
    assert cycles(edges) == [["slm_tasks.a", "slm_tasks.b", "slm_tasks.a"]]


def test_leaf_modules_import_nothing_of_ours():
    assert not offences(lambda m: m in LEAVES, lambda m, t: True)


def test_the_task_layer_imports_no_results_adapters_boards_or_edge():
    allowed = LEAVES | TASK_LAYER

    def forbidden(m, t):
        return t not in allowed and not t.startswith("slm_tasks.sandbox")

    assert not offences(lambda m: m in TASK_LAYER, forbidden)


def test_the_results_layer_imports_only_itself_and_leaves():
    assert not offences(lambda m: m.startswith(RESULTS), lambda m, t: t not in LEAVES and not t.startswith(RESULTS))


def test_adapters_and_results_never_import_the_leaderboards():
    assert not offences(lambda m: m.startswith((ADAPTERS, RESULTS)), lambda m, t: t.startswith(BOARDS))


def test_the_backend_base_knows_nothing_of_the_cluster_or_ray():
    backend = f"{ADAPTERS}.backend"
    bad = [
        f"{MODS[backend].relative_to(REPO)}:{line} ({backend} imports {t})"
        for t, line in GRAPH[backend]
        if t in CLUSTER or t == "ray" or t.startswith("ray.")
    ]
    assert not bad


@pytest.mark.parametrize("package", [BOARDS, RESULTS, ADAPTERS])
def test_package_inits_hold_no_logic(package):
    """A package's __init__ is its docstring and, for the leaderboards, the public API's
    re-exports: logic there would be imported back by the modules it re-exports."""
    tree = ast.parse(MODS[package].read_text(encoding="utf-8"))
    for node in tree.body:
        docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        targets = [getattr(t, "id", None) for t in getattr(node, "targets", [])]
        all_list = isinstance(node, ast.Assign) and targets == ["__all__"]
        assert docstring or all_list or isinstance(node, ast.ImportFrom), (
            f"{MODS[package].relative_to(REPO)}:{node.lineno}: {type(node).__name__} in {package}'s "
            f"__init__; move it into a module and re-export it"
        )
