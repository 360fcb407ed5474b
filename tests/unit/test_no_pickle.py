"""Files: nothing on disk is loaded with pickle (or anything else that runs code), every data
path comes from coordinator/paths.py, and a shard directory is only opened by its own collection.

The first checks read the source with `ast`, so they hold for code paths no test runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from shardvec.contract.errors import FailedPrecondition, InvalidArgument
from shardvec.contract.settings import IndexSettings
from shardvec.coordinator.paths import collection_dir, registry_path, replica_dir, snapshot_dir
from shardvec.shard.engine import ShardEngine
from tests import inproc

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("proto/shardvec/contract", "shard", "coordinator", "cluster", "bench")
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "shelve", "marshal", "dill", "cloudpickle",
                  "joblib"}
PATH_HELPERS = {"collection_dir", "replica_dir", "registry_path", "snapshot_dir"}


def _modules() -> list[tuple[Path, ast.Module]]:
    out = []
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            out.append((path, ast.parse(path.read_text(encoding="utf-8"), str(path))))
    assert len(out) > 20
    return out


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(REPO)}:{getattr(node, 'lineno', '?')}"


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def test_no_module_imports_pickle_or_its_relatives() -> None:
    bad = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
                names += [f"{node.module}.{a.name}" for a in node.names]
            bad += [f"{_where(path, node)} {n}" for n in names
                    if n.split(".")[0] in UNSAFE_MODULES or n.split(".")[-1] in UNSAFE_MODULES]
    assert bad == []


def test_no_loader_that_can_run_code() -> None:
    """np.load never with allow_pickle (its default, False, is safe); no yaml.load, eval or
    exec; hnswlib indexes are loaded from their own format, never unpickled."""
    bad = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _dotted(node.func)
            if name in ("np.load", "numpy.load"):
                for kw in node.keywords:
                    if kw.arg == "allow_pickle" and not (
                        isinstance(kw.value, ast.Constant) and kw.value.value is False
                    ):
                        bad.append(f"{_where(path, node)} np.load(allow_pickle=...)")
            if name in ("yaml.load", "yaml.unsafe_load", "eval", "exec", "torch.load",
                        "pd.read_pickle", "pandas.read_pickle"):
                bad.append(f"{_where(path, node)} {name}")
            if name.endswith("__setstate__") or (name.endswith(".loads") and "pickle" in name):
                bad.append(f"{_where(path, node)} {name}")
    assert bad == []


def test_data_paths_come_from_the_paths_helper() -> None:
    """Outside coordinator/paths.py no code joins anything onto a data directory, and the names of
    the data layout (collections/, registry.sqlite, snapshots/) appear nowhere else."""
    layout = {"collections", "registry.sqlite", "snapshots"}
    bad = []
    uses: dict[str, int] = {}
    for path, tree in _modules():
        if path == REPO / "coordinator" / "paths.py" or path.is_relative_to(REPO / "bench"):
            continue  # benchmarks read the shared data set, not a shardvec data directory
        for node in ast.walk(tree):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
                left = _dotted(node.left)
                if left.split(".")[-1] == "data_dir":
                    bad.append(f"{_where(path, node)} {left} / ...")
            if isinstance(node, ast.Call):
                name = _dotted(node.func)
                if name == "os.path.join":
                    bad.append(f"{_where(path, node)} os.path.join")
                if name.split(".")[-1] in PATH_HELPERS:
                    uses[name.split(".")[-1]] = uses.get(name.split(".")[-1], 0) + 1
            if isinstance(node, ast.Constant) and node.value in layout:
                bad.append(f"{_where(path, node)} {node.value!r}")
    assert bad == []
    # the coordinator reaches replica and collection directories through the helpers
    assert uses.get("replica_dir", 0) >= 1 and uses.get("collection_dir", 0) >= 1
    assert uses.get("registry_path", 0) >= 1


@pytest.mark.parametrize("bad", ["../x", "..", ".", "a/b", "/etc", "", "x" * 65, "a b", "é",
                                 "a\x00", "a\\b"])
def test_no_collection_name_escapes_the_data_directory(tmp_path: Path, bad: str) -> None:
    for build in (lambda: collection_dir(tmp_path, bad), lambda: replica_dir(tmp_path, bad, 0, 0)):
        with pytest.raises(InvalidArgument, match=r"\[A-Za-z0-9_-\]\{1,64\}"):
            build()


def test_each_collection_owns_a_disjoint_subtree(tmp_path: Path) -> None:
    names = ["a", "a_1", "a-1", "A", "x" * 64]
    dirs = {n: collection_dir(tmp_path, n) for n in names}
    for n, d in dirs.items():
        assert d.parent == tmp_path / "collections" and d.name == n
        for s in range(3):
            for r in range(2):
                rd = replica_dir(tmp_path, n, s, r)
                assert rd.is_relative_to(d)
                assert not any(rd.is_relative_to(o) for m, o in dirs.items() if m != n)
    assert len({replica_dir(tmp_path, n, s, r) for n in names for s in range(3)
                for r in range(2)}) == len(names) * 6
    for helper in (registry_path(tmp_path), snapshot_dir(tmp_path)):
        assert not any(helper.is_relative_to(d) for d in dirs.values())
    with pytest.raises(InvalidArgument):
        replica_dir(tmp_path, "a", -1, 0)


def _engine(directory: Path, **settings: object) -> ShardEngine:
    return ShardEngine(directory, IndexSettings(**{"dim": 8, "metric": "cosine", **settings}))


@pytest.mark.parametrize(
    ("other", "named"),
    [
        ({"dim": 16}, "dim: stored 8, requested 16"),
        ({"metric": "euclidean"}, "metric: stored 'cosine', requested 'euclidean'"),
        ({"m": 32}, "m: stored 16, requested 32"),
        ({"ef_construction": 100}, "ef_construction: stored 200"),
    ],
)
def test_a_shard_directory_refuses_other_settings(
    tmp_path: Path, other: dict[str, object], named: str
) -> None:
    """A replica directory written for one collection's settings is not opened with another's,
    and the failed open leaves its rows as they were."""
    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((20, 8)).astype(np.float32)
    e = _engine(tmp_path / "r")
    inproc.write(e, 1, [f"v{i}" for i in range(20)], vecs, [{"i": i} for i in range(20)])
    e.close()
    with pytest.raises(FailedPrecondition, match="created with other settings") as info:
        _engine(tmp_path / "r", **other)
    assert named in info.value.message and str(tmp_path / "r") in info.value.message
    e = _engine(tmp_path / "r")
    try:
        assert e.count() == 20 and e.applied_seq == 1
        got = e.get([f"v{i}" for i in range(20)])
        np.testing.assert_array_equal(np.stack([r.vector for r in got if r]), vecs)
    finally:
        e.close()
