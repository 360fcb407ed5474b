"""The layers' dependencies run one way: contract <- shard <- coordinator <- cluster <- bench.

Everything is installed under one namespace, `shardvec` (pyproject's package-dir maps
`shardvec.coordinator` to coordinator/ and so on); no module imports a bare `coordinator`.

Read from the source (every import, lazy ones inside functions too), so a cycle or a wrong-way
import fails here before it shows up as an ImportError at run time.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Package -> where its modules live; `shardvec.contract` is the contract layer beside the
# generated `shardvec.v1` code.
ROOTS = {
    "shardvec.contract": REPO / "proto" / "shardvec" / "contract",
    "shardvec.shard": REPO / "shard",
    "shardvec.coordinator": REPO / "coordinator",
    "shardvec.cluster": REPO / "cluster",
    "shardvec.bench": REPO / "bench",
}
SHARD, COORDINATOR, CLUSTER, BENCH = (
    f"shardvec.{p}" for p in ("shard", "coordinator", "cluster", "bench")
)
# What each layer may import of the others (the generated shardvec.v1 code is free to all).
ALLOWED = {
    "shardvec.contract": set(),
    SHARD: {"shardvec.contract"},
    COORDINATOR: {"shardvec.contract", SHARD},  # shard: the actor factory only, see below
    CLUSTER: {"shardvec.contract", SHARD, COORDINATOR},
    BENCH: {"shardvec.contract", SHARD, COORDINATOR, CLUSTER},
}
COORDINATOR_MAY_IMPORT_FROM_SHARD = {"shardvec.shard.actor"}


def _module_name(package: str, root: Path, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([package, *parts])


def _graph() -> dict[str, set[str]]:
    """Module -> project modules it imports (the nearest module for `from pkg import name`)."""
    modules: dict[str, Path] = {}
    for package, root in ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            if "_pb2" not in path.name:
                modules[_module_name(package, root, path)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    deps.add(target)
                    break
        graph[name] = deps
    assert len(graph) > 40
    return graph


def _layer(module: str) -> str:
    return next(p for p in ROOTS if module == p or module.startswith(p + "."))


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_module_import_cycle() -> None:
    assert _find_cycle(_graph()) is None


def test_no_package_import_cycle_and_every_import_goes_down() -> None:
    graph = _graph()
    wrong = sorted(
        f"{mod} -> {dep}"
        for mod, deps in graph.items()
        for dep in deps
        if _layer(dep) != _layer(mod) and _layer(dep) not in ALLOWED[_layer(mod)]
    )
    assert wrong == []
    packages = {p: {_layer(d) for m in graph if _layer(m) == p for d in graph[m]} - {p}
                for p in ROOTS}  # fmt: skip
    assert _find_cycle(packages) is None


def test_coordinator_imports_shard_only_for_the_actor_factory() -> None:
    graph = _graph()
    used = {
        f"{mod} -> {dep}"
        for mod, deps in graph.items()
        if _layer(mod) == COORDINATOR
        for dep in deps
        if _layer(dep) == SHARD and dep not in COORDINATOR_MAY_IMPORT_FROM_SHARD
    }
    assert used == set()


def test_the_checker_sees_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def _loaded_after(statement: str) -> set[str]:
    code = (
        f"import sys; {statement}; "
        "print(' '.join(sorted({'.'.join(m.split('.')[:2]) if m.startswith('shardvec.') "
        "else m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return set(out.stdout.split())


@pytest.mark.parametrize(
    ("statement", "forbidden"),
    [
        ("import shardvec.cluster.client", {"hnswlib", "ray", SHARD}),
        ("from shardvec import Client", {"hnswlib", "ray", SHARD}),
        ("import shardvec.coordinator.replicas.shard_client", {"hnswlib", "ray", SHARD}),
        (
            "import shardvec.contract.convert, shardvec.contract.archive",
            {"hnswlib", "ray", SHARD, COORDINATOR, CLUSTER, BENCH},
        ),
    ],
)
def test_light_imports_stay_light(statement: str, forbidden: set[str]) -> None:
    assert _loaded_after(statement) & forbidden == set()


def _sub_package(module: str) -> str:
    """`shardvec.coordinator.queries.reads` -> `shardvec.coordinator.queries` (a top-level
    coordinator module is its own)."""
    parts = module.split(".")
    root = REPO / "coordinator" / parts[2] if len(parts) > 3 else None
    return ".".join(parts[:3]) if root is not None and root.is_dir() else module


def test_nothing_outside_a_coordinator_sub_package_imports_its_private_names() -> None:
    wrong = []
    root = ROOTS[COORDINATOR]
    sources = {_module_name(COORDINATOR, root, p): p for p in root.rglob("*.py")}
    sources.update({
        _module_name(layer, r, p): p for layer, r in ROOTS.items() if layer != COORDINATOR
        for p in r.rglob("*.py") if "_pb2" not in p.name
    })  # fmt: skip
    for name, path in sources.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.level == 0):
                continue
            if not node.module.startswith(COORDINATOR + "."):
                continue
            private = [a.name for a in node.names if a.name.startswith("_")]
            if private and _sub_package(node.module) != _sub_package(name):
                wrong.append(f"{name}: from {node.module} import {', '.join(private)}")
    assert wrong == []


def test_sub_packages_are_told_apart() -> None:
    assert _sub_package("shardvec.coordinator.queries.reads") == "shardvec.coordinator.queries"
    assert _sub_package("shardvec.coordinator.runtime") == "shardvec.coordinator.runtime"
    assert _sub_package("shardvec.coordinator.fronts.actor") != _sub_package(
        "shardvec.coordinator.fronts.pool".replace("fronts", "layout")
    )


def test_pyproject_installs_every_package_and_no_other() -> None:
    """A package moved or added without pyproject's `packages` breaks `pip install` (and the
    editable install the tests run from) in a fresh clone; this says so first."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ])
    found = {"shardvec", "shardvec.v1"}
    for package, root in ROOTS.items():
        for init in root.rglob("__init__.py"):
            found.add(_module_name(package, root, init))
    assert listed == found


def test_coordinator_sub_packages_and_modules_import_without_a_cycle() -> None:
    """Within the coordinator, each sub-package (api, queries, writes, replicas, changes,
    fronts, embedding) and each top-level module is one node: no cycle among them, so the
    folders read as layers (docs/design-notes.md, "Where each concern lives")."""
    graph = _graph()
    nodes: dict[str, set[str]] = {}
    for mod, deps in graph.items():
        if _layer(mod) != COORDINATOR:
            continue
        for dep in deps:
            if _layer(dep) == COORDINATOR and _sub_package(dep) != _sub_package(mod):
                nodes.setdefault(_sub_package(mod), set()).add(_sub_package(dep))
    assert _find_cycle(nodes) is None
