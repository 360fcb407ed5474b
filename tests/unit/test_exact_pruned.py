"""The head-first exact scan (shard/exact.py steps a-c, shard/compact.py's rotated basis): a
single query reads the tails of only the rows its head bound cannot rule out, and its answers
equal a NumPy float64 brute force for every metric, with ties, filtered and not, after a
restart (the basis fitted again from the store's first chunk)."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardvec.contract.filters import parse_where
from shardvec.contract.settings import IndexSettings
from shardvec.contract.store_copy import MANIFEST_FILE
from shardvec.shard import exact
from shardvec.shard.checkpoint import CODES_FILE
from shardvec.shard.compact import HEAD_FRACTION, ROTATE_MIN_ROWS, CompactVectors
from shardvec.shard.engine import ShardEngine
from shardvec.shard.store import Store
from tests import inproc

DIM = 64
N = 3000
METRICS = ["cosine", "dot", "euclidean"]


def _rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """Clustered rows (so a head bound can rule rows out), with exact duplicates and near
    duplicates of some of them (ties at the top)."""
    centers = rng.standard_normal((12, DIM)) * 2.0
    x = (centers[rng.integers(0, 12, n)] + rng.standard_normal((n, DIM))).astype(np.float32)
    dst = n - np.arange(1, n // 8)
    x[dst] = x[dst - n // 2]
    x[dst[::2], 5] += np.float32(1e-6)
    return x


def _exact_keys(metric: str, x: np.ndarray, q: np.ndarray) -> np.ndarray:
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    if metric == "cosine":
        x64 = x64 / np.linalg.norm(x64, axis=1, keepdims=True)
        q64 = q64 / np.linalg.norm(q64, axis=1, keepdims=True)
    if metric == "euclidean":
        return np.asarray((x64 * x64).sum(1)[None, :] - 2 * q64 @ x64.T)
    return np.asarray(-(q64 @ x64.T))


def _brute(metric: str, x: np.ndarray, rows: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    key = _exact_keys(metric, x[rows], q)
    order = np.lexsort((np.broadcast_to(rows, key.shape), key), axis=1)[:, :k]
    return np.asarray(rows[order])


def _slots(e: ShardEngine, rows: np.ndarray) -> np.ndarray:
    return np.array([e._slots.id_to_slot[f"r{i}"] for i in rows], dtype=np.int64)


def _ids(ids: np.ndarray) -> np.ndarray:
    return np.array([[int(r[1:]) if r else -1 for r in row] for row in ids.tolist()])


@pytest.mark.parametrize("metric", METRICS)
def test_head_bound_is_below_every_exact_key(metric: str) -> None:
    """The proof the scan rests on: for every row and query, head key - |q_tail| |x_tail| -
    the head's bound <= the exact key, and the whole approximate key is within the bound."""
    rng = np.random.default_rng(21)
    c = CompactVectors(DIM, metric)
    x = _rows(rng, 600)
    c.set(np.arange(300), x[:300])  # fits the basis
    c.set(np.arange(300, 600), x[300:] * np.float32(3.0))  # widens the grid
    x[300:] *= np.float32(3.0)
    assert c.rotated and c.head_dims == DIM // HEAD_FRACTION
    q = rng.standard_normal((16, DIM)).astype(np.float32)
    if metric == "cosine":
        q /= np.linalg.norm(q, axis=1, keepdims=True)
    want = _exact_keys(metric, x, q)
    head = c.head_terms(q)
    hk = np.empty((len(q), len(x)), dtype=np.float32)
    c.head_keys(head, slice(0, len(x)), hk)
    lb = hk - head.tail_weight[:, None] * c.tail_norms(slice(0, len(x)))[None] - head.bound[:, None]
    assert (lb <= want).all(), float((lb - want).max())
    scaled, offset, bound = c.query_terms(q)
    keys = np.empty((len(q), len(x)), dtype=np.float32)
    c.keys(scaled, offset, slice(0, len(x)), keys)
    assert (np.abs(keys - want) <= bound[:, None]).all()
    assert c.within_cells(np.arange(len(x)), x).all()


@pytest.mark.parametrize("metric", METRICS)
def test_single_queries_read_few_tails_and_stay_exact(
    tmp_path: Path, metric: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(22)
    x = _rows(rng, N)
    e = ShardEngine(tmp_path, IndexSettings(dim=DIM, metric=metric, m=8, ef_construction=40))
    sparse = [i % 5 == 0 or i < 700 for i in range(N)]  # 1,180 rows: gathered, not in place
    inproc.write(e, 1, [f"r{i}" for i in range(N)], x,
                 [{"i": i, "s": s} for i, s in enumerate(sparse)])  # fmt: skip
    assert e._rows.compact.rotated
    read: list[int] = []
    whole = exact._whole_keys

    def counted(*args: object) -> np.ndarray:
        read.append(len(args[-1]))  # type: ignore[arg-type]
        return whole(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(exact, "_whole_keys", counted)
    # queries at duplicated rows (ties at the top) and near the clusters
    q = np.concatenate([x[N - 40 : N - 20], x[:20] + rng.standard_normal((20, DIM)) * 0.1])
    q = q.astype(np.float32)
    live = np.arange(N)
    cases = ((None, live), ({"i": {"$gte": 1000}}, live[1000:]), ({"s": True}, live[sparse]))
    for where, rows in cases:
        f = parse_where(where) if where else None
        for k in (1, 10, 50):
            for one in range(len(q)):
                res = e.search(q[one : one + 1], k, exact=True, where=f)
                want = _brute(metric, x, rows, q[one : one + 1], k)
                np.testing.assert_array_equal(_ids(res.ids), want)
        batch = e.search(q[:3], 10, exact=True, where=f)  # a batch of three: pruned too
        np.testing.assert_array_equal(_ids(batch.ids), _brute(metric, x, rows, q[:3], 10))
    # most tails were never read: the candidates of each query are a small share of its rows
    assert read and float(np.median(read)) < N / 4, (np.median(read), max(read))
    e.close()
    e = ShardEngine(tmp_path, IndexSettings(dim=DIM, metric=metric, m=8, ef_construction=40))
    assert e._rows.compact.rotated  # fitted again from the store's first chunk
    for one in range(0, len(q), 7):
        res = e.search(q[one : one + 1], 10, exact=True)
        want = _brute(metric, x, live, q[one : one + 1], 10)
        np.testing.assert_array_equal(_ids(res.ids), want)
    e.close()


def test_a_small_first_batch_keeps_the_identity_basis(tmp_path: Path) -> None:
    """A first batch below ROTATE_MIN_ROWS leaves the codes unrotated and unsplit (every row
    is scanned whole); answers stay exact, and a restart fits the basis from the store."""
    rng = np.random.default_rng(23)
    x = _rows(rng, N)
    e = ShardEngine(tmp_path, IndexSettings(dim=DIM, metric="cosine", m=8, ef_construction=40))
    small = ROTATE_MIN_ROWS - 1
    inproc.write(e, 1, [f"r{i}" for i in range(small)], x[:small])
    inproc.write(e, 2, [f"r{i}" for i in range(small, N)], x[small:])
    c = e._rows.compact
    assert not c.rotated and c.head_dims == DIM and c.nbytes(10) == 10 * DIM
    q = x[:5] + np.float32(0.01)
    res = e.search(q[:1], 10, exact=True)
    np.testing.assert_array_equal(_ids(res.ids), _brute("cosine", x, np.arange(N), q[:1], 10))
    e.close()
    e = ShardEngine(tmp_path, IndexSettings(dim=DIM, metric="cosine", m=8, ef_construction=40))
    assert e._rows.compact.rotated and e._rows.compact.nbytes(10) == 10 * (DIM + 4)
    res = e.search(q[1:2], 10, exact=True)
    np.testing.assert_array_equal(_ids(res.ids), _brute("cosine", x, np.arange(N), q[1:2], 10))
    e.close()


@pytest.mark.parametrize("metric", METRICS)
def test_a_restart_takes_the_codes_from_the_checkpoint(
    tmp_path: Path, metric: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a kill, the codes come from the checkpoint and only the rows written after it
    are read from the store and coded; values beyond the grid (which widen it) and deletes
    among them. Every live row's stored vector lies within its cells, and answers stay the
    float64 brute force's."""
    rng = np.random.default_rng(31)
    x = _rows(rng, N)
    settings = IndexSettings(dim=DIM, metric=metric, m=8, ef_construction=40)
    e = ShardEngine(tmp_path, settings, checkpoint_rows=10**9)
    first = 2000
    inproc.write(e, 1, [f"r{i}" for i in range(first)], x[:first])
    e.checkpoint()
    inproc.write(e, 2, [f"r{i}" for i in range(first, N)], x[first:])
    moved = np.arange(0, 300, 3)
    x[moved] *= np.float32(3.0)  # outside the checkpoint's grid
    inproc.write(e, 3, [f"r{i}" for i in moved], x[moved])
    gone = np.arange(1, 200, 4)
    inproc.delete(e, 4, ids=[f"r{i}" for i in gone])
    del e  # no close(): no new checkpoint, like a kill
    gc.collect()

    read: list[int] = []
    live_vectors = Store.live_vectors

    def counted(store: Store, dim: int, after_seq: int = -1) -> Iterator[tuple[Any, Any]]:
        for labels, vecs in live_vectors(store, dim, after_seq):
            read.append(len(labels))
            yield labels, vecs

    monkeypatch.setattr(Store, "live_vectors", counted)
    e = ShardEngine(tmp_path, settings)
    try:
        live = np.setdiff1d(np.arange(N), gone)
        newer = np.union1d(np.arange(first, N), np.setdiff1d(moved, gone))
        assert sum(read) == len(newer)  # the live rows written after the checkpoint, no more
        slots = _slots(e, live)
        c = e._rows.compact
        assert c.rotated and c.within_cells(slots, x[live]).all()
        q = x[rng.integers(0, N, 6)] + np.float32(0.05)
        for one in range(len(q)):
            res = e.search(q[one : one + 1], 10, exact=True)
            np.testing.assert_array_equal(
                _ids(res.ids), _brute(metric, x, live, q[one : one + 1], 10)
            )
    finally:
        e.close()


def test_damaged_or_absent_checkpoint_codes_are_coded_from_the_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """codes.npz that is not the file the manifest vouches for, or is not there, or a manifest
    written before codes were kept: the restart codes every row from the store, and answers
    stay exact."""
    rng = np.random.default_rng(37)
    x = _rows(rng, N)
    settings = IndexSettings(dim=DIM, metric="dot", m=8, ef_construction=40)
    e = ShardEngine(tmp_path, settings)
    inproc.write(e, 1, [f"r{i}" for i in range(N)], x)
    e.close()
    q = x[:3] + np.float32(0.05)
    manifest = tmp_path / MANIFEST_FILE
    raw = json.loads(manifest.read_text())
    assert raw["codes"]["file"] == CODES_FILE
    with (tmp_path / CODES_FILE).open("r+b") as f:
        f.seek(200)
        f.write(b"\x00" * 16)
    without = {k: v for k, v in raw.items() if k != "codes"}
    for damage in ("bytes", "no file (a snapshot carries index.bin alone)", "no manifest entry"):
        if damage.startswith("no file"):
            (tmp_path / CODES_FILE).unlink()
        if damage == "no manifest entry":
            manifest.write_text(json.dumps(without))
        caplog.clear()
        e = ShardEngine(tmp_path, settings)
        try:
            assert ("codes unusable" in caplog.text) == (damage != "no manifest entry")
            assert e.info()["checkpoint_seq"] == 1  # the index itself was still used
            c = e._rows.compact
            assert c.rotated and c.within_cells(_slots(e, np.arange(N)), x).all()
            res = e.search(q, 10, exact=True)
            np.testing.assert_array_equal(_ids(res.ids), _brute("dot", x, np.arange(N), q, 10))
        finally:
            e.close()  # nothing replayed: no new checkpoint, the damage stays for the next case
