"""ShardEngine: writes, reads, scores, the filter planner, persistence, recovery, catch-up."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import shardvec.shard.exact as exact_mod
import shardvec.shard.planner as planner_mod
from shardvec.contract.errors import DataLoss, FailedPrecondition, InvalidArgument
from shardvec.contract.filters import parse_where
from shardvec.contract.settings import IndexSettings
from shardvec.contract.shard_requests import check_search
from shardvec.contract.store_copy import INDEX_FILE, MANIFEST_FILE
from shardvec.contract.types import Change, ShardSearch
from shardvec.shard.engine import ShardEngine
from shardvec.shard.planner import PlannerSettings
from shardvec.shard.rwlock import RWLock
from tests import inproc

DIM = 16
REPO = Path(__file__).resolve().parents[2]


def _settings(metric: str = "cosine") -> IndexSettings:
    return IndexSettings(dim=DIM, metric=metric, m=16, ef_construction=100, ef=64)


def _data(seed: int, n: int, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _meta(i: int) -> dict[str, Any]:
    return {"i": i, "p05": i % 200 == 0, "p10": i % 10 == 0, "p60": i % 10 < 6, "tag": f"t{i % 3}"}


def _fill(e: ShardEngine, x: np.ndarray, *, seq0: int = 1, batch: int = 500, start: int = 0) -> int:
    """Upsert x as ids str(start + i) in batches; returns the next free seq."""
    seq = seq0
    for b in range(0, len(x), batch):
        idx = range(start + b, start + min(b + batch, len(x)))
        ids = [str(i) for i in idx]
        assert inproc.write(e, seq, ids, x[b : b + batch], [_meta(i) for i in idx])
        seq += 1
    return seq


def _brute(metric: str, base: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """NumPy top-k (row positions, user scores), best first."""
    if metric == "cosine":
        b = base / np.linalg.norm(base, axis=1, keepdims=True)
        qq = q / np.linalg.norm(q, axis=1, keepdims=True)
        s = qq @ b.T
    elif metric == "dot":
        s = q @ base.T
    else:
        s = -np.sqrt(((q[:, None, :] - base[None, :, :]) ** 2).sum(-1))
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    scores = np.take_along_axis(s, order, axis=1)
    return order, (-scores if metric == "euclidean" else scores)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[ShardEngine]:
    e = ShardEngine(tmp_path / "r", _settings(), build_threads=1)
    yield e
    e.close()


# ------------------------------------------------------------------------------ writes/reads


def test_upsert_get_count_delete(engine: ShardEngine) -> None:
    x = _data(0, 100)
    assert engine.applied_seq == 0
    _fill(engine, x, batch=40)
    assert engine.applied_seq == 3 and engine.count() == 100
    r = engine.get(["5", "nope", "99"])
    assert r[1] is None
    assert r[0] is not None and r[0].id == "5" and r[0].metadata == _meta(5)
    np.testing.assert_array_equal(r[0].vector, x[5])  # as upserted, not normalised
    slim = engine.get(["5"], include_vectors=False, include_metadata=False)[0]
    assert slim is not None and slim.vector is None and slim.metadata is None
    assert engine.count(parse_where({"p10": True})) == 10
    assert inproc.delete(engine, 4, ids=["5", "6", "nope"]) == 2
    assert engine.get(["5", "6"]) == [None, None]
    assert engine.count() == 98
    assert inproc.delete(engine, 5, where=parse_where({"p10": True})) == 10
    assert engine.count() == 88 and engine.count(parse_where({"p10": True})) == 0
    assert inproc.delete(engine, 6, ids=["5"]) == 0  # already gone
    assert engine.applied_seq == 6
    res = engine.search(x[:5], 3)
    assert not set(res.ids.ravel()) & {"5", "6", "0", "10"}
    with pytest.raises(InvalidArgument):
        inproc.delete(engine, 7)
    with pytest.raises(InvalidArgument):
        inproc.delete(engine, 7, ids=["1"], where=parse_where({"p10": True}))


def test_reupsert_replaces_vector_and_metadata(engine: ShardEngine) -> None:
    x = _data(1, 50)
    _fill(engine, x)
    slots = engine.info()["slots"]
    new = _data(2, 1)
    assert inproc.write(engine, 2, ["7"], new, [{"fresh": True}])
    rec = engine.get(["7"])[0]
    assert rec is not None and rec.metadata == {"fresh": True}
    np.testing.assert_array_equal(rec.vector, new[0])
    assert engine.count() == 50 and engine.info()["slots"] == slots
    assert engine.count(parse_where({"i": 7})) == 0
    assert engine.count(parse_where({"fresh": True})) == 1
    top = engine.search(new, 1)
    assert top.ids[0, 0] == "7" and top.scores[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_replayed_seq_changes_nothing(engine: ShardEngine) -> None:
    x = _data(3, 20)
    _fill(engine, x)
    before = engine.info()
    assert inproc.write(engine, 1, ["0"], _data(4, 1), [{"x": 1}]) is False
    assert inproc.write(engine, 1, ["new"], _data(4, 1)) is False
    assert inproc.delete(engine, 1, ids=["0"]) == 0
    assert engine.get(["new"]) == [None]
    rec = engine.get(["0"])[0]
    assert rec is not None and rec.metadata == _meta(0)
    assert engine.info() == before
    # A gap in seq is allowed and recorded.
    assert inproc.write(engine, 10, ["new"], _data(4, 1))
    assert engine.applied_seq == 10
    assert inproc.write(engine, 5, ["late"], _data(4, 1)) is False


def test_bad_batch_is_rejected_whole(engine: ShardEngine) -> None:
    x = _data(5, 10)
    _fill(engine, x)
    bad = _data(6, 3)
    bad[2, 4] = np.nan
    info = engine.info()
    with pytest.raises(InvalidArgument, match=r"vectors\[2\]"):
        inproc.write(engine, 2, ["a", "b", "c"], bad)
    with pytest.raises(InvalidArgument):
        inproc.write(
            engine, 2, ["a", "b", "c"], _data(6, 3), [{"ok": 1}, {"ok": 2}, {"bad": {"x": 1}}]
        )
    with pytest.raises(InvalidArgument):
        inproc.write(engine, 2, ["a", "a"], _data(6, 2))
    with pytest.raises(InvalidArgument):
        inproc.write(engine, 2, ["a", "b"], _data(6, 3))
    with pytest.raises(InvalidArgument):
        inproc.write(engine, 2, ["a"], np.zeros((1, DIM), dtype=np.float32))  # cosine zero vector
    with pytest.raises(InvalidArgument):
        inproc.write(engine, 0, ["a"], _data(6, 1))
    assert engine.info() == info
    assert engine.get(["a", "b", "c"]) == [None, None, None]


# ------------------------------------------------------------------------------------ scores


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_scores_match_numpy(tmp_path: Path, metric: str) -> None:
    x = _data(7, 1500)
    q = _data(8, 20)
    e = ShardEngine(tmp_path, _settings(metric), build_threads=1)
    try:
        _fill(e, x)
        k = 10
        order, want = _brute(metric, x, q, k)
        exact = e.search(q, k, exact=True)
        assert (exact.counts == k).all()
        np.testing.assert_array_equal(exact.ids, order.astype(str))
        np.testing.assert_allclose(exact.scores, want, rtol=1e-4, atol=1e-4)
        approx = e.search(q, k, ef=200)
        hits = np.mean(
            [len(set(a) & set(b)) / k for a, b in zip(approx.ids, exact.ids, strict=True)]
        )
        assert hits >= 0.95
        # Every returned score is the true score of its id, best first.
        rows = approx.ids.astype(int)
        _, all_scores = _brute(metric, x, q, len(x))
        full_order, _ = _brute(metric, x, q, len(x))
        true = np.empty_like(all_scores)
        np.put_along_axis(true, full_order, all_scores, axis=1)
        np.testing.assert_allclose(approx.scores, np.take_along_axis(true, rows, axis=1), atol=1e-4)
        step = np.diff(approx.scores, axis=1)
        assert (step <= 1e-6).all() if metric != "euclidean" else (step >= -1e-6).all()
    finally:
        e.close()


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_score_thresholds(tmp_path: Path, metric: str) -> None:
    x = _data(9, 300)
    q = _data(10, 5)
    e = ShardEngine(tmp_path, _settings(metric), build_threads=1)
    try:
        _fill(e, x)
        full = e.search(q, 20, exact=True)
        cut = float(np.median(full.scores))
        if metric == "euclidean":
            with pytest.raises(InvalidArgument):
                check_search(ShardSearch(q, 20, min_score=0.1), DIM, metric)
            res = e.search(q, 20, max_distance=cut)
            keep = full.scores <= cut
        else:
            with pytest.raises(InvalidArgument):
                check_search(ShardSearch(q, 20, max_distance=0.1), DIM, metric)
            res = e.search(q, 20, min_score=cut)
            keep = full.scores >= cut
        np.testing.assert_array_equal(res.counts, keep.sum(axis=1))
        for row in range(len(q)):
            n = res.counts[row]
            assert set(res.ids[row, :n]) <= set(full.ids[row])
            assert (res.ids[row, n:] == "").all() and np.isnan(res.scores[row, n:]).all()
    finally:
        e.close()


def test_empty_and_small_engines(engine: ShardEngine) -> None:
    q = _data(11, 3)
    res = engine.search(q, 5)
    assert res.ids.shape == (3, 5) and (res.counts == 0).all() and np.isnan(res.scores).all()
    inproc.write(engine, 1, ["a", "b"], _data(12, 2))
    res = engine.search(q, 5)
    assert (res.counts == 2).all()
    assert (res.ids[:, 2:] == "").all() and set(res.ids[0, :2]) == {"a", "b"}
    with pytest.raises(InvalidArgument):  # refused where the request is built
        check_search(ShardSearch(q, 0), DIM, "cosine")
    with pytest.raises(InvalidArgument):
        check_search(ShardSearch(_data(11, 3, dim=DIM + 1), 5), DIM, "cosine")


# ------------------------------------------------------------------------------------ filters


@pytest.fixture(scope="module")
def filtered_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShardEngine]:
    # A low exact threshold so 0.5% runs exact, 10% the filter callback, 60% the post-filter.
    planner = PlannerSettings(exact_threshold=100)
    e = ShardEngine(tmp_path_factory.mktemp("f"), _settings(), build_threads=2, planner=planner)
    _fill(e, _data(13, 5000), batch=1000)
    yield e
    e.close()


@pytest.mark.parametrize("field,expected", [("p05", 25), ("p10", 500), ("p60", 3000)])
@pytest.mark.parametrize("k", [1, 10, 40])
def test_filtered_search_returns_min_k_matches(
    filtered_engine: ShardEngine, field: str, expected: int, k: int
) -> None:
    where = parse_where({field: True})
    assert filtered_engine.count(where) == expected
    q = _data(14, 30)
    res = filtered_engine.search(q, k, where=where)
    assert (res.counts == min(k, expected)).all()
    passing = {str(i) for i in range(5000) if _meta(i)[field]}
    for row in range(len(q)):
        assert set(res.ids[row, : res.counts[row]]) <= passing
    exact = filtered_engine.search(q, k, where=where, exact=True)
    found = [len((set(a) & set(b)) - {""}) for a, b in zip(res.ids, exact.ids, strict=True)]
    assert np.mean(found) / min(k, expected) >= 0.9


def test_filter_rejecting_the_neighbourhood_falls_back(filtered_engine: ShardEngine) -> None:
    """A broad filter whose matches all lie far from the query still yields k hits."""
    q = _data(15, 4)
    # tag t0 is 1/3 of rows (post-filter path), combined with the nearest rows excluded.
    near = filtered_engine.search(q, 200)
    banned = sorted({int(i) for i in near.ids.ravel()})
    where = parse_where({"$and": [{"tag": "t0"}, {"i": {"$nin": banned[:1024]}}]})
    m = filtered_engine.count(where)
    res = filtered_engine.search(q, 50, where=where)
    assert (res.counts == min(50, m)).all()
    assert not set(res.ids.ravel()) & {str(i) for i in banned[:1024]}


def test_filtered_paths_are_used(
    filtered_engine: ShardEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = exact_mod.exact_topk

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[3]))
        return real(*args, **kwargs)

    monkeypatch.setattr(planner_mod, "exact_topk", spy)
    q = _data(16, 8)
    filtered_engine.search(q, 10, where=parse_where({"p60": True}))
    filtered_engine.search(q, 10, where=parse_where({"p10": True}))
    assert calls == []  # hnsw (post-filter, then filter callback) served both
    filtered_engine.search(q, 10, where=parse_where({"p05": True}))
    assert calls == [25]
    filtered_engine.search(q, 10, where=parse_where({"i": {"$lt": 0}}))
    assert calls == [25]  # no match: no work at all


def test_a_ten_percent_filter_where_the_int8_scan_is_cheaper_is_answered_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The planner prices exact scoring at the int8 scan's measured cost: at a size where
    the scan of the passing rows costs less than the widened HNSW search it predicts (here
    pinned between the scan's cost at the old float32 constant and at the measured one), a
    10 % filter is scored exactly, and its answers are NumPy's exact top-10 (recall 1.0),
    single and batched."""
    n, dim, k = 5000, 64, 10
    default = PlannerSettings()
    row_dim = (n // 10) * dim  # the passing rows x dimension
    old_cost = 5.2e-10  # the float32 copy's single-query cost, before the int8 copy
    assert default.exact_row_cost < old_cost
    # the HNSW cost the planner predicts for a 10 % filter: hnsw_query_cost / 0.1 ** 0.75
    between = row_dim * (default.exact_row_cost + old_cost) / 2
    hnsw = between * 0.1**default.selectivity_exponent
    planner = PlannerSettings(hnsw_query_cost=hnsw)
    e = ShardEngine(tmp_path, IndexSettings(dim=dim, metric="cosine"), build_threads=2,
                    planner=planner)  # fmt: skip
    x = _data(40, n, dim)
    for seq, s in enumerate(range(0, n, 1000), start=1):
        ids = [str(i) for i in range(s, s + 1000)]
        metas = [{"b": i % 10} for i in range(s, s + 1000)]
        assert inproc.write(e, seq, ids, x[s : s + 1000], metas)
    priced = e._planner
    assert priced._exact_is_cheaper(1, n // 10, n, dim)
    assert not _with_single_cost(priced, old_cost)._exact_is_cheaper(1, n // 10, n, dim)
    calls: list[int] = []
    real = exact_mod.exact_topk

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[3]))
        return real(*args, **kwargs)

    monkeypatch.setattr(planner_mod, "exact_topk", spy)
    passing = np.arange(3, n, 10)
    q = _data(41, 12, dim)
    want, _ = _brute("cosine", x[passing], q, k)
    where = parse_where({"b": 3})
    singles = [e.search(q[i : i + 1], k, where=where).ids[0] for i in range(len(q))]
    assert calls == [len(passing)] * len(q)  # every single query took the exact plan
    for got, row in zip(singles, want, strict=True):
        assert [int(i) for i in got] == passing[row].tolist()  # recall 1.0, in order
    batch = e.search(q, k, where=where)  # a batch is priced per query: cheaper still
    assert calls[len(q):] == [len(passing)]
    assert [[int(i) for i in r] for r in batch.ids] == passing[want].tolist()
    e.close()


def _with_single_cost(planner: planner_mod.SearchPlanner, cost: float
                             ) -> planner_mod.SearchPlanner:  # fmt: skip
    """A planner like `planner` pricing a single query's exact scoring at `cost`."""
    import dataclasses

    settings = dataclasses.replace(planner.settings, exact_row_cost=cost)
    other = planner_mod.SearchPlanner(settings, "cosine", 1, planner._rows)
    other.hnsw_query_cost = planner.hnsw_query_cost
    return other


# ---------------------------------------------------------------------- slots and growth


def test_deleted_slots_are_reused(engine: ShardEngine) -> None:
    x = _data(17, 300)
    seq = _fill(engine, x, batch=100)
    slots = engine.info()["slots"]
    assert inproc.delete(engine, seq, ids=[str(i) for i in range(100)]) == 100
    assert engine.info()["deleted_slots"] == 100
    seq = _fill(engine, _data(18, 100), seq0=seq + 1, start=1000)
    info = engine.info()
    assert info["slots"] == slots and info["deleted_slots"] == 0 and info["count"] == 300
    # Reused slots are searchable under their new ids only.
    fresh = engine.get(["1000"])[0]
    assert fresh is not None and fresh.vector is not None
    top = engine.search(fresh.vector[None, :], 1)
    assert top.ids[0, 0] == "1000"
    assert engine.get(["0"]) == [None]


def test_growth_past_several_resize_chunks(engine: ShardEngine) -> None:
    x = _data(19, 7000)
    _fill(engine, x, batch=700)
    info = engine.info()
    assert info["count"] == 7000 and info["capacity"] >= 7000 and info["slots"] == 7000
    q = x[::700] + 0.01
    res = engine.search(q, 1)
    np.testing.assert_array_equal(res.ids[:, 0], [str(i) for i in range(0, 7000, 700)])


# --------------------------------------------------------------------------- persistence


def _snapshot(e: ShardEngine, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = e.search(q, 10)
    b = e.search(q, 10, exact=True)
    return a.ids, b.ids, b.scores


def test_restart_roundtrip(tmp_path: Path) -> None:
    x = _data(20, 2000)
    q = _data(21, 20)
    e = ShardEngine(tmp_path, _settings(), build_threads=2)
    seq = _fill(e, x)
    inproc.delete(e, seq, ids=[str(i) for i in range(0, 2000, 7)])
    before = _snapshot(e, q)
    count = e.count()
    e.close()
    e = ShardEngine(tmp_path, _settings(), build_threads=2)
    try:
        assert e.info()["checkpoint_seq"] == seq and e.count() == count
        after = _snapshot(e, q)
        for a, b in zip(before, after, strict=True):
            np.testing.assert_array_equal(a, b)
        assert e.info()["dirty_rows"] == 0
    finally:
        e.close()


def test_reopen_without_close_keeps_rows(tmp_path: Path) -> None:
    x = _data(22, 1200)
    q = _data(23, 10)
    e = ShardEngine(tmp_path, _settings(), build_threads=2, checkpoint_rows=500)
    seq = _fill(e, x[:800], batch=400)  # an automatic checkpoint at 800 rows
    assert (tmp_path / MANIFEST_FILE).exists() and e.info()["checkpoint_seq"] == seq - 1
    # After the checkpoint: new rows, re-upserts, deletes, and a deleted slot reused.
    inproc.delete(e, seq, ids=[str(i) for i in range(0, 100)])
    inproc.write(e, seq + 1, [str(i) for i in range(800, 1100)], x[800:1100], None)
    inproc.write(e, seq + 2, [str(i) for i in range(200, 250)], x[1100:1150], None)
    inproc.delete(e, seq + 3, ids=[str(i) for i in range(300, 320)])  # freed slots stay free
    expected = _snapshot(e, q)[1:]
    count = e.count()
    del e  # no close(): no checkpoint, like a crash
    gc.collect()
    e = ShardEngine(tmp_path, _settings(), build_threads=2)
    try:
        info = e.info()
        assert info["checkpoint_seq"] == seq - 1  # the checkpoint was loaded, then replayed
        # Replayed: 300 new rows (100 of them in freed slots) and 50 re-upserted ones;
        # hidden: the 20 rows deleted last.
        assert info["dirty_rows"] == 300 + 50 + 20
        assert e.count() == count == 980
        assert e.get(["300", "319"]) == [None, None]
        assert e.get(["5"]) == [None]
        rec = e.get(["210"])[0]
        assert rec is not None
        np.testing.assert_array_equal(rec.vector, x[1110])
        after = _snapshot(e, q)
        np.testing.assert_array_equal(after[1], expected[0])
        np.testing.assert_allclose(after[2], expected[1], atol=1e-6)
        assert (e.search(q, 10).counts == 10).all()
    finally:
        e.close()


def test_a_large_index_checkpoints_at_a_tenth_of_its_labels(tmp_path: Path) -> None:
    """Each checkpoint writes the whole index, so past ten times `checkpoint_rows` labels a
    replica checkpoints when a tenth of them changed (contract/limits.py CHECKPOINT_SHARE):
    the bytes written per row changed stay bounded as it grows, and a restart after a crash
    replays at most that tenth."""
    x = _data(31, 1900)
    e = ShardEngine(tmp_path, _settings(), build_threads=2, checkpoint_rows=100)
    taken = []
    for b in range(19):  # 100 rows a batch, seq b + 1
        before = e.info()["checkpoint_seq"]
        _fill(e, x[b * 100 : (b + 1) * 100], seq0=b + 1, batch=100, start=b * 100)
        if e.info()["checkpoint_seq"] != before:
            taken.append(b + 1)
    # Up to 1,000 labels every 100 rows; then at 1,200 (120 due), 1,400, 1,600, 1,800.
    assert taken == [*range(1, 11), 12, 14, 16, 18]
    assert e.info()["dirty_rows"] == 100  # 1,900 labels: 190 due
    del e  # no close(): no checkpoint, like a crash
    gc.collect()
    e = ShardEngine(tmp_path, _settings(), build_threads=2, checkpoint_rows=100)
    try:
        info = e.info()
        assert info["checkpoint_seq"] == 18 and info["dirty_rows"] == 100  # replayed, under 190
        assert e.count() == 1900
        np.testing.assert_array_equal(e.search(x[1850:1860], 1, exact=True).ids[:, 0],
                                      [str(i) for i in range(1850, 1860)])  # fmt: skip
    finally:
        e.close()


def test_killed_process_keeps_acknowledged_rows(tmp_path: Path) -> None:
    script = f"""
import os, sys, numpy as np
sys.path[:0] = [{str(REPO)!r}, {str(REPO / "proto")!r}]
from shardvec.shard.engine import ShardEngine
from shardvec.contract.settings import IndexSettings
e = ShardEngine({str(tmp_path)!r}, IndexSettings(dim={DIM}), build_threads=1, checkpoint_rows=400)
x = np.random.default_rng(24).standard_normal((600, {DIM})).astype(np.float32)
for b in range(6):
    e.upsert(b + 1, [str(i) for i in range(b * 100, b * 100 + 100)], x[b * 100 : b * 100 + 100])
    print(b + 1, flush=True)
os._exit(9)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 9, out.stderr
    assert out.stdout.split() == ["1", "2", "3", "4", "5", "6"]
    e = ShardEngine(tmp_path, IndexSettings(dim=DIM), build_threads=1)
    try:
        assert e.count() == 600 and e.applied_seq == 6
        assert e.info()["checkpoint_seq"] == 4  # rows of seq 5 and 6 were replayed
        x = _data(24, 600)
        want = [str(i) for i in range(0, 600, 50)]
        np.testing.assert_array_equal(e.search(x[::50], 1, exact=True).ids[:, 0], want)
        np.testing.assert_array_equal(e.search(x[::50], 1).ids[:, 0], want)
    finally:
        e.close()


def _damage(path: Path, how: str) -> None:
    index, manifest = path / INDEX_FILE, path / MANIFEST_FILE
    if how == "truncate_index":
        with open(index, "r+b") as f:
            f.truncate(index.stat().st_size // 2)
    elif how == "flip_index_byte":
        data = bytearray(index.read_bytes())
        data[len(data) // 3] ^= 0x40
        index.write_bytes(bytes(data))
    elif how == "garbage_manifest":
        manifest.write_bytes(b"\x00\xff{not json")
    elif how == "wrong_manifest_fields":
        manifest.write_text(json.dumps({"format_version": 1, "seq": "x"}))
    elif how == "delete_manifest":
        manifest.unlink()
    elif how == "delete_index":
        index.unlink()
    else:
        raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "truncate_index",
        "flip_index_byte",
        "garbage_manifest",
        "wrong_manifest_fields",
        "delete_manifest",
        "delete_index",
    ],
)
def test_damaged_checkpoint_is_rebuilt(
    tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    x = _data(25, 800)
    q = _data(26, 10)
    e = ShardEngine(tmp_path, _settings(), build_threads=2)
    seq = _fill(e, x, batch=400)
    inproc.delete(e, seq, ids=[str(i) for i in range(0, 800, 9)])
    expected = _snapshot(e, q)[1:]
    count = e.count()
    e.close()
    _damage(tmp_path, how)
    with caplog.at_level("WARNING"):
        e = ShardEngine(tmp_path, _settings(), build_threads=2)
    try:
        assert any("rebuil" in r.message for r in caplog.records)
        assert e.count() == count
        got = e.get([str(i) for i in range(800)])
        assert sum(r is not None for r in got) == count
        after = _snapshot(e, q)
        np.testing.assert_array_equal(after[1], expected[0])
        np.testing.assert_allclose(after[2], expected[1], atol=1e-6)
        assert (tmp_path / MANIFEST_FILE).exists()  # a fresh checkpoint replaced the bad one
    finally:
        e.close()


def test_settings_mismatch_and_lost_store(tmp_path: Path) -> None:
    e = ShardEngine(tmp_path, _settings())
    _fill(e, _data(27, 50))
    e.close()
    with pytest.raises(FailedPrecondition):
        ShardEngine(tmp_path, _settings("dot"))
    os.remove(tmp_path / "store.sqlite")
    with pytest.raises(DataLoss, match="lost"):
        ShardEngine(tmp_path, _settings())


def test_engine_rejects_use_after_close(tmp_path: Path) -> None:
    e = ShardEngine(tmp_path, _settings())
    e.close()
    e.close()
    with pytest.raises(FailedPrecondition):
        e.search(_data(28, 1), 1)


# ---------------------------------------------------------------------------- catch-up


def _copy(src: ShardEngine, dst: ShardEngine, limit: int) -> int:
    pages = 0
    while True:
        changes, applied = src.changes_since(dst.applied_seq, limit)
        if not changes:
            dst.apply_changes([], applied)
            return pages
        dst.apply_changes(changes, changes[-1].seq)
        pages += 1


def test_changes_since_and_apply_changes_copy_a_replica(tmp_path: Path) -> None:
    x = _data(29, 600)
    src = ShardEngine(tmp_path / "a", _settings(), build_threads=1)
    dst = ShardEngine(tmp_path / "b", _settings(), build_threads=1)
    try:
        seq = _fill(src, x[:400], batch=100)
        assert _copy(src, dst, 150) >= 2
        # The target has rows the source later deletes, re-upserts, and adds.
        inproc.delete(src, seq, ids=[str(i) for i in range(0, 400, 4)])
        inproc.write(src, seq + 1, [str(i) for i in range(1, 50, 4)], x[400:413], [{"v": 2}] * 13)
        inproc.write(src, seq + 2, [str(i) for i in range(400, 587)], x[413:600], None)
        inproc.delete(src, seq + 3, where=parse_where({"tag": "t1"}))
        changes, applied = src.changes_since(dst.applied_seq)
        assert applied == seq + 3 and any(c.deleted for c in changes)
        assert [c.seq for c in changes] == sorted(c.seq for c in changes)
        _copy(src, dst, 1000)
        assert dst.applied_seq == src.applied_seq and dst.count() == src.count()
        every = [str(i) for i in range(600)]
        for a, b in zip(dst.get(every), src.get(every), strict=True):
            assert (a is None) == (b is None)
            if a is not None and b is not None:
                assert (a.id, a.metadata) == (b.id, b.metadata)
                np.testing.assert_array_equal(a.vector, b.vector)
        assert dst.get(["0", "4"]) == [None, None]  # tombstones copied, not resurrected
        q = _data(30, 10)
        ra, rb = src.search(q, 10, exact=True), dst.search(q, 10, exact=True)
        np.testing.assert_array_equal(ra.ids, rb.ids)
        # Replaying the same changes is harmless; an older state never overwrites a newer one.
        old = Change("1", 1, x[0], {"old": True}, False)
        dst.apply_changes([old], 1)
        rec = dst.get(["1"])[0]
        assert rec is not None and rec.metadata == {"v": 2}
        assert dst.changes_since(0, 10_000)[1] == src.applied_seq
    finally:
        src.close()
        dst.close()


def test_apply_changes_below_checkpoint_survives_crash(tmp_path: Path) -> None:
    e = ShardEngine(tmp_path, _settings(), build_threads=1)
    _fill(e, _data(31, 50))
    inproc.write(e, 9, ["z"], _data(32, 1))
    e.checkpoint()
    v = _data(33, 1)[0]
    e.apply_changes([Change("late", 3, v, {"late": True}, False)], 9)
    del e
    gc.collect()
    e = ShardEngine(tmp_path, _settings(), build_threads=1)
    try:
        assert e.count() == 52
        assert e.search(v[None, :], 1).ids[0, 0] == "late"
    finally:
        e.close()


# -------------------------------------------------------------------------- concurrency


def test_concurrent_searches_and_writes(tmp_path: Path) -> None:
    x = _data(34, 3000)
    q = _data(35, 8)
    e = ShardEngine(tmp_path, _settings(), search_threads=1, build_threads=1, checkpoint_rows=700)
    try:
        seq = _fill(e, x[:1000])
        errors: list[BaseException] = []
        stop = threading.Event()
        searches = [0, 0]

        def searcher(n: int) -> None:
            try:
                while not stop.is_set() and searches[n] < 2000:
                    res = e.search(q, 5, where=parse_where({"p60": True}) if n else None)
                    assert (res.counts == 5).all() and (res.ids != "").all()
                    searches[n] += 1
            except BaseException as exc:  # reported below
                errors.append(exc)

        def writer() -> None:
            nonlocal seq
            try:
                deadline = time.monotonic() + 2.0
                for b in range(1000, 3000, 100):
                    if time.monotonic() > deadline:
                        break
                    ids = [str(i) for i in range(b, b + 100)]
                    inproc.write(e, seq, ids, x[b : b + 100], [_meta(i) for i in range(b, b + 100)])
                    inproc.delete(e, seq + 1, ids=[str(i) for i in range(b - 1000, b - 980)])
                    seq += 2
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=searcher, args=(i,)) for i in (0, 1)]
        threads.append(threading.Thread(target=writer))
        for t in threads:
            t.start()
        threads[2].join(timeout=60)
        stop.set()
        for t in threads[:2]:
            t.join(timeout=60)
        assert not errors, errors
        assert min(searches) > 0
        live = [i for i in range(3000) if e.get([str(i)], include_vectors=False)[0] is not None]
        assert e.count() == len(live)
        order, _ = _brute("cosine", x[live], q, 10)
        want = np.asarray(live)[order].astype(str)
        np.testing.assert_array_equal(e.search(q, 10, exact=True).ids, want)
        got = e.search(q, 10)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got.ids, want, strict=True)])
        assert recall >= 0.95
    finally:
        e.close()


def test_rwlock_prefers_writers() -> None:
    lock = RWLock()
    order: list[str] = []
    lock.acquire_read()
    writer_waiting = threading.Event()

    def writer() -> None:
        writer_waiting.set()
        with lock.write():
            order.append("writer")

    def late_reader() -> None:
        with lock.read():
            order.append("reader")

    w = threading.Thread(target=writer)
    w.start()
    writer_waiting.wait(5)
    deadline = time.monotonic() + 5
    while not lock._writers_waiting and time.monotonic() < deadline:
        time.sleep(0.001)
    r = threading.Thread(target=late_reader)
    r.start()
    time.sleep(0.05)
    assert order == []  # the late reader queues behind the waiting writer
    lock.release_read()
    w.join(5)
    r.join(5)
    assert order == ["writer", "reader"]


def test_a_replica_never_written_answers_a_search_with_every_payload(tmp_path: Path) -> None:
    """A shard that never got a row (its row data has no slots yet) answers a search asking
    for metadata, vectors and documents with padding, not an IndexError."""
    e = ShardEngine(tmp_path, IndexSettings(dim=4, metric="cosine"), search_threads=1)
    try:
        q = np.ones((2, 4), dtype=np.float32)
        for where in (None, parse_where({"i": {"$gte": 3}})):
            res = e.search(q, 5, where=where, include_metadata=True, include_vectors=True,
                           include_documents=True)
            assert (res.ids == "").all() and (res.counts == 0).all()
    finally:
        e.close()


def test_bucket_masks_answer_for_the_right_rows_before_and_after_a_reopen(tmp_path: Path) -> None:
    """A read's bucket mask (a layout change's read view) counts and searches only the rows
    of those buckets; after a reopen the buckets come from the store, not rehashed."""
    from shardvec.contract.buckets import NUM_BUCKETS, bucket_of

    ids = [f"m{i}" for i in range(300)]
    vecs = np.random.default_rng(4).standard_normal((300, 8)).astype(np.float32)
    owned = np.zeros(NUM_BUCKETS, dtype=bool)
    owned[: NUM_BUCKETS // 3] = True
    mine = {i for i in ids if owned[bucket_of(i)]}
    e = ShardEngine(tmp_path / "b", IndexSettings(dim=8))
    inproc.write(e, 1, ids, vecs, [{} for _ in ids])
    for _ in range(2):
        assert e.count(buckets=owned) == len(mine) and e.count() == 300
        got = e.search(vecs[:20], 300, exact=True, buckets=owned)
        assert {i for row in got.ids for i in row if i} == mine
        e.close()
        e = ShardEngine(tmp_path / "b", IndexSettings(dim=8))
    e.close()
