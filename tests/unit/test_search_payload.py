"""A search carries each hit's stored metadata and vector (one round trip), and exact scoring
reads the in-memory row data: dense over every slot or gathered for a subset, both equal to
brute force, also after deletes, re-inserts and a restart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import shardvec.shard.exact as exact_mod
from shardvec.contract.filters import parse_where
from shardvec.contract.settings import IndexSettings
from shardvec.shard.engine import ShardEngine
from tests import inproc

DIM = 12


def _engine(path: Path, metric: str) -> ShardEngine:
    return ShardEngine(path, IndexSettings(dim=DIM, metric=metric, m=16, ef_construction=100))


def _meta(i: int) -> dict[str, Any]:
    return {"i": i, "odd": i % 2 == 1, "name": f"row {i}", "tags": ["a", "b"][: i % 3]}


def _load(e: ShardEngine, n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    inproc.write(e, 1, [f"r{i}" for i in range(n)], x, [_meta(i) for i in range(n)])
    return x


def _brute(metric: str, base: np.ndarray, rows: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    b, qq = base[rows], q
    if metric == "cosine":
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        qq = q / np.linalg.norm(q, axis=1, keepdims=True)
    euclid = metric == "euclidean"
    key = ((qq[:, None, :] - b[None]) ** 2).sum(-1) if euclid else -(qq @ b.T)
    return rows[np.argsort(key, axis=1, kind="stable")[:, :k]]


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_hits_carry_their_stored_metadata_and_vectors(tmp_path: Path, metric: str) -> None:
    e = _engine(tmp_path, metric)
    x = _load(e, 300)
    q = np.random.default_rng(1).standard_normal((7, DIM)).astype(np.float32)
    for kwargs in ({}, {"exact": True}, {"where": parse_where({"odd": True})}):
        res = e.search(q, 5, include_metadata=True, include_vectors=True, **kwargs)
        assert res.metadata is not None and res.vectors is not None
        for row in range(len(q)):
            for j, rid in enumerate(res.ids[row].tolist()):
                if not rid:
                    assert res.metadata[row, j] == ""
                    continue
                i = int(rid[1:])
                assert json.loads(res.metadata[row, j]) == _meta(i)
                np.testing.assert_array_equal(res.vectors[row, j], x[i])
    plain = e.search(q, 5)
    assert plain.metadata is None and plain.vectors is None
    e.close()


def test_metadata_follows_updates_deletes_and_a_restart(tmp_path: Path) -> None:
    e = _engine(tmp_path, "cosine")
    x = _load(e, 50)
    inproc.write(e, 2, ["r3"], x[3:4], [{"new": True}])
    inproc.delete(e, 3, ids=["r4"])
    inproc.write(e, 4, ["r4b"], x[4:5], [])  # reuses r4's slot, no metadata
    for engine in (e, None):
        if engine is None:
            e.close()
            engine = _engine(tmp_path, "cosine")
        res = engine.search(x[[3, 4]], 1, exact=True, include_metadata=True)
        assert res.ids[:, 0].tolist() == ["r3", "r4b"]
        assert res.metadata is not None
        assert json.loads(res.metadata[0, 0]) == {"new": True}
        assert res.metadata[1, 0] == ""
    engine.close()


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
@pytest.mark.parametrize("chunk", [7, 16_384])
def test_exact_dense_and_gathered_equal_brute_force(
    tmp_path: Path, metric: str, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    e = _engine(tmp_path, metric)
    x = _load(e, 400, seed=3)
    inproc.delete(e, 2, ids=[f"r{i}" for i in range(0, 400, 5)])  # holes the dense path must skip
    live = np.array([i for i in range(400) if i % 5], dtype=np.int64)
    q = np.random.default_rng(4).standard_normal((9, DIM)).astype(np.float32)
    seen: list[bool] = []
    real = exact_mod.exact_topk

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(2 * len(args[3]) >= (kwargs.get("n_slots") or 1 << 60))
        return real(*args[:5], chunk, n_slots=kwargs.get("n_slots"))

    monkeypatch.setattr("shardvec.shard.planner.exact_topk", spy)
    dense = e.search(q, 10, exact=True)
    odd = np.array([i for i in live if i % 2 == 1])
    subset = e.search(q, 10, exact=True, where=parse_where({"odd": True, "i": {"$lt": 100}}))
    assert seen == [True, False]
    want = _brute(metric, x, live, q, 10)
    assert [[int(r[1:]) for r in row] for row in dense.ids.tolist()] == want.tolist()
    small = odd[odd < 100]
    want_small = _brute(metric, x, small, q, 10)
    assert [[int(r[1:]) for r in row] for row in subset.ids.tolist()] == want_small.tolist()
    e.close()
