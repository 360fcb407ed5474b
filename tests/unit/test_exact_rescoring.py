"""Exact scoring scans int8 codes and rescores in float64 (shard/compact.py, shard/exact.py):
its answers equal a NumPy float64 brute force for every metric, with exact and near ties,
after the codes' grid widened, filtered and not; hits carry their vectors as upserted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shardvec.contract.filters import parse_where
from shardvec.contract.settings import IndexSettings
from shardvec.shard.compact import CompactVectors
from shardvec.shard.engine import ShardEngine
from shardvec.shard.row_vectors import RowVectors
from tests import inproc

DIM = 16
METRICS = ["cosine", "dot", "euclidean"]


def _engine(path: Path, metric: str) -> ShardEngine:
    return ShardEngine(path, IndexSettings(dim=DIM, metric=metric, m=8, ef_construction=40))


def _brute(
    metric: str, base: np.ndarray, rows: np.ndarray, q: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers and scores of the best k of `rows` in float64, ties by lower row."""
    b, qq = base[rows].astype(np.float64), q.astype(np.float64)
    if metric == "cosine":
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        qq = qq / np.linalg.norm(qq, axis=1, keepdims=True)
    key = ((qq[:, None, :] - b[None]) ** 2).sum(-1) if metric == "euclidean" else -(qq @ b.T)
    order = np.lexsort((np.broadcast_to(rows, key.shape), key), axis=1)[:, :k]
    best = np.take_along_axis(key, order, axis=1)
    scores = np.sqrt(best) if metric == "euclidean" else -best
    return rows[order], scores


def _tied_rows(rng: np.random.Generator, n: int, scale: float = 1.0) -> np.ndarray:
    """Random rows, then exact duplicates and near-duplicates (1e-6 apart, well inside one
    int8 cell) of some of them, so the top-k has exact ties and near ties."""
    x = (scale * rng.standard_normal((n, DIM))).astype(np.float32)
    src = rng.choice(n // 2, size=n // 4, replace=False)
    dst = n // 2 + np.arange(n // 4)
    x[dst] = x[src]
    near = dst[::2]
    x[near, 3] += np.float32(1e-6) * scale
    return x


def _ids_to_rows(ids: np.ndarray) -> np.ndarray:
    return np.array([[int(r[1:]) if r else -1 for r in row] for row in ids.tolist()])


def _check(metric: str, e: ShardEngine, x: np.ndarray, live: np.ndarray, q: np.ndarray,
           k: int, where: dict | None = None) -> None:  # fmt: skip
    res = e.search(q, k, exact=True, where=parse_where(where) if where else None)
    want, want_scores = _brute(metric, x, live, q, k)
    np.testing.assert_array_equal(_ids_to_rows(res.ids), want)
    np.testing.assert_allclose(res.scores, want_scores, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("metric", METRICS)
def test_exact_equals_float64_brute_force_with_ties(tmp_path: Path, metric: str) -> None:
    rng = np.random.default_rng(11)
    n = 2000
    x = _tied_rows(rng, n)
    e = _engine(tmp_path, metric)
    inproc.write(e, 1, [f"r{i}" for i in range(n)], x, [{"odd": i % 2 == 1} for i in range(n)])
    # queries at the duplicated rows (ties at the top) and random ones
    q = np.concatenate([x[n // 2 : n // 2 + 20], rng.standard_normal((20, DIM))]).astype(np.float32)
    all_rows = np.arange(n)
    for k in (1, 10, 50):
        _check(metric, e, x, all_rows, q, k)
    _check(metric, e, x, all_rows[all_rows % 2 == 1], q, 10, {"odd": True})
    e.close()


@pytest.mark.parametrize("metric", METRICS)
def test_exact_after_the_grid_widens(tmp_path: Path, metric: str) -> None:
    """Rows far outside the first rows' range widen the grid (the held rows are re-coded);
    answers stay exact, also for queries pointing at the first rows, and after a restart."""
    rng = np.random.default_rng(12)
    small = _tied_rows(rng, 300, scale=0.01)
    big = _tied_rows(rng, 300, scale=5.0)
    shifted = (rng.standard_normal((300, DIM)) + 40.0).astype(np.float32)
    x = np.concatenate([small, big, shifted])
    e = _engine(tmp_path, metric)
    seq = 1
    for start in range(0, len(x), 150):
        ids = [f"r{i}" for i in range(start, start + 150)]
        metas = [{"i": i} for i in range(start, start + 150)]
        inproc.write(e, seq, ids, x[start : start + 150], metas)
        seq += 1
    compact = e._rows.compact
    assert (compact._err > compact._step / 2 * 1.001).any()  # some rows were re-coded
    q = np.concatenate([small[:10], big[:10], shifted[:5], rng.standard_normal((5, DIM))])
    q = q.astype(np.float32)
    live = np.arange(len(x))
    _check(metric, e, x, live, q, 10)
    _check(metric, e, x, live[live < 300], q, 10, {"i": {"$lt": 300}})
    res = e.search(q, 5, exact=True, include_vectors=True)
    assert res.vectors is not None
    np.testing.assert_array_equal(res.vectors, x[_ids_to_rows(res.ids)])
    e.close()
    e = _engine(tmp_path, metric)  # the codes are made afresh from the store
    _check(metric, e, x, live, q, 10)
    e.close()


@pytest.mark.parametrize("metric", METRICS)
def test_bound_holds_for_every_row_and_query(metric: str) -> None:
    """|approximate key - exact key| <= the query's bound, for every row, as the grid widens
    batch by batch (the proof the rescoring rests on)."""
    rng = np.random.default_rng(13)
    c = CompactVectors(DIM, metric)
    grow = ((0.1, 0), (1, 0), (3, 2), (1, -9))  # scale, offset of each batch
    batches = [rng.standard_normal((50, DIM)) * s + o for s, o in grow]
    xs = [b.astype(np.float32) for b in batches]
    for i, b in enumerate(xs):
        c.set(np.arange(50 * i, 50 * (i + 1)), b)
        x = np.concatenate(xs[: i + 1])
        q = rng.standard_normal((8, DIM)).astype(np.float32)
        if metric == "cosine":
            q /= np.linalg.norm(q, axis=1, keepdims=True)
        scaled, offset, bound = c.query_terms(q)
        keys = np.empty((len(q), len(x)), dtype=np.float32)
        c.keys(scaled, offset, slice(0, len(x)), keys)
        x64, q64 = x.astype(np.float64), q.astype(np.float64)
        if metric == "cosine":
            x64 = x64 / np.linalg.norm(x64, axis=1, keepdims=True)
        if metric == "euclidean":
            exact = (x64 * x64).sum(1)[None, :] - 2 * q64 @ x64.T
        else:
            exact = -(q64 @ x64.T)
        gap = np.abs(keys - exact)
        assert (gap <= bound[:, None]).all(), float((gap - bound[:, None]).max())
        assert c.within_cells(np.arange(len(x)), x).all()
    other = xs[0] + np.float32(0.5)
    assert not c.within_cells(np.arange(50), other).any()


@pytest.mark.parametrize("metric", METRICS)
def test_hits_carry_vectors_as_upserted_after_rewrites(tmp_path: Path, metric: str) -> None:
    """Vectors of hits (HNSW, exact, filtered) are the upserted float32 values, bit for bit,
    also for rows rewritten in place and slots reused after a delete."""
    rng = np.random.default_rng(14)
    x = (3.0 * rng.standard_normal((400, DIM))).astype(np.float32)
    e = _engine(tmp_path, metric)
    inproc.write(e, 1, [f"r{i}" for i in range(400)], x, [{"i": i} for i in range(400)])
    x[:50] = (3.0 * rng.standard_normal((50, DIM))).astype(np.float32)
    inproc.write(e, 2, [f"r{i}" for i in range(50)], x[:50], [{"i": i} for i in range(50)])
    inproc.delete(e, 3, ids=[f"r{i}" for i in range(50, 100)])
    x[50:100] = (3.0 * rng.standard_normal((50, DIM))).astype(np.float32)
    back = range(50, 100)
    inproc.write(e, 4, [f"r{i}" for i in back], x[50:100], [{"i": i} for i in back])
    q = x[:30] + np.float32(0.01)
    for kwargs in ({}, {"exact": True}, {"where": parse_where({"i": {"$lt": 120}})}):
        res = e.search(q, 8, include_vectors=True, **kwargs)
        assert res.vectors is not None
        rows = _ids_to_rows(res.ids)
        assert (rows >= 0).all()
        np.testing.assert_array_equal(res.vectors, x[rows])
    e.close()


@pytest.mark.parametrize("metric", METRICS)
def test_rows_the_store_holds_newer_than_memory_are_not_used(tmp_path: Path, metric: str) -> None:
    """The store commits a batch before memory applies it: while it runs ahead, a slot's row
    there (rewritten, or another id in a reused slot) is not the one in memory, and exact
    scores and hit vectors come from memory's state (hnswlib), never from the newer row;
    except under cosine, whose hnswlib copy is normalised: a hit's vector there is the row's
    newest values as upserted, read by its id, once the tries to let the batch in are spent."""
    rng = np.random.default_rng(15)
    x = rng.standard_normal((200, DIM)).astype(np.float32)
    e = _engine(tmp_path, metric)
    inproc.write(e, 1, [f"r{i}" for i in range(200)], x, [])
    slot = e._slots.id_to_slot
    newer = (x[:2] + np.float32(7.0)).astype(np.float32)
    e._store.write(  # committed, not applied: r0 rewritten, r1's slot taken by another id
        None,
        upserts=[("r0", slot["r0"], 2, newer[0].tobytes(), None),
                 ("zz", slot["r1"], 2, newer[1].tobytes(), None)],
        tombstones=[("r1", 2)],
    )  # fmt: skip
    _, ok = RowVectors(e).read(np.array([slot["r0"], slot["r1"], slot["r2"]]))
    assert ok.tolist() == [False, False, True]
    q = x[:2] + np.float32(1e-3)
    res = e.search(q, 3, exact=True, include_vectors=metric != "cosine")
    assert res.ids[:, 0].tolist() == ["r0", "r1"]
    want, _ = _brute(metric, x, np.arange(200), q, 3)
    np.testing.assert_array_equal(_ids_to_rows(res.ids), want)
    if metric != "cosine":  # hnswlib holds dot and euclidean rows as upserted
        assert res.vectors is not None
        np.testing.assert_array_equal(res.vectors[:, 0], x[:2])
    else:  # searched again while the batch stays unapplied; the last try reads r0 by its id
        # (its newest committed values, as upserted); r1, which that batch deleted, is given
        # as hnswlib holds it (normalised)
        res = e.search(q, 3, include_vectors=True)
        assert res.vectors is not None
        np.testing.assert_array_equal(res.vectors[0, 0], newer[0])
        unit = x[1] / np.linalg.norm(x[1])
        np.testing.assert_allclose(res.vectors[1, 0], unit, rtol=1e-6, atol=1e-7)
    e.close()
