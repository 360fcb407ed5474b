"""Expiry (TTL) at the shard level, under a clock the test moves (no sleeps): an expired row
is invisible to every read from the moment it expires (search exact and HNSW, keyword,
get, count, scroll, facet, group-by), the sweep removes it for good (store, index, FTS5,
columns) with its figures, and expiries survive reopening, catch-up and an old store."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardvec.contract.codec import dumps_json
from shardvec.contract.errors import InvalidArgument
from shardvec.contract.facets import NUMBER_RANK
from shardvec.contract.filters import Cond
from shardvec.contract.groups import GroupBy, ShardGroupSearch
from shardvec.contract.limits import SWEEP_GRACE_S
from shardvec.contract.settings import IndexSettings
from shardvec.contract.shard_requests import row_batch
from shardvec.contract.store_copy import STORE_FILE
from shardvec.contract.types import KeywordSearch, ShardScroll, ShardSearch, ShardUpdate, ShardWrite
from shardvec.contract.validation import check_ttl, row_expiries
from shardvec.shard.engine import ShardEngine
from shardvec.shard.staging import update_plan
from shardvec.shard.sweep import Sweeper

DIM = 8
T0 = 1_000_000.0


class Clock:
    """A clock the test sets."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _engine(tmp: Path, clock: Clock, **kw: Any) -> ShardEngine:
    return ShardEngine(tmp, IndexSettings(dim=DIM, metric="euclidean"), clock=clock,
                       checkpoint_rows=1 << 40, **kw)  # fmt: skip


def _write(
    e: ShardEngine, seq: int, ids: list[str], vecs: np.ndarray, expires: list[float] | None,
    docs: list[str] | None = None, mds: list[dict[str, Any]] | None = None,
) -> None:
    w = ShardWrite(
        ids=ids, vectors=vecs,
        metadata_json=[dumps_json(m) for m in mds] if mds else [],
        documents=docs or [], expires_at=expires or [],
    )  # fmt: skip
    e.stage(seq, row_batch(w, DIM, e.settings.metric))
    e.resolve(seq, True)


def _filled(tmp: Path, clock: Clock, n: int = 200) -> tuple[ShardEngine, np.ndarray]:
    """n rows, every even one expiring at T0 + 10, the odd ones never."""
    rng = np.random.default_rng(7)
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    e = _engine(tmp, clock)
    ids = [f"r{i}" for i in range(n)]
    expires = [T0 + 10 if i % 2 == 0 else 0.0 for i in range(n)]
    docs = [f"common word{i % 3}" for i in range(n)]
    mds = [{"g": i % 4, "tag": "x"} for i in range(n)]
    _write(e, 1, ids, vecs, expires, docs, mds)
    return e, vecs


def _reads(e: ShardEngine, vecs: np.ndarray) -> dict[str, set[str]]:
    """The ids every read kind returns over the whole shard."""
    n = len(vecs)
    out: dict[str, set[str]] = {}
    for exact in (True, False):
        got = e.search(vecs[:5], 30, exact=exact)
        out[f"search exact={exact}"] = {i for i in got.ids.ravel().tolist() if i}
    got = e.search(vecs[:5], 30, where=Cond("tag", "eq", "x"))
    out["search filtered"] = {i for i in got.ids.ravel().tolist() if i}
    stats = e.keyword_stats(["common"])
    kw = e.keyword_search(KeywordSearch(stats.queries, stats.doc_count, stats.total_tokens, n))
    out["keyword"] = {i for i in kw.ids.ravel().tolist() if i}
    out["get"] = {r.id for r in e.get([f"r{i}" for i in range(n)]) if r is not None}
    page = e.scroll(ShardScroll(0, "", 1 << 16, n + 5))
    out["scroll"] = set(page.ids)
    fpage = e.scroll(ShardScroll(0, "", 1 << 16, n + 5, where=Cond("tag", "eq", "x")))
    out["scroll filtered"] = set(fpage.ids)
    grouped = e.group_search(ShardGroupSearch(ShardSearch(queries=vecs[:2], k=1, exact=True),
                                              GroupBy("g", 4, n)))  # fmt: skip
    out["group"] = {i for i in grouped.hits.ids.ravel().tolist() if i}
    return out


def test_expired_rows_are_invisible_to_every_read(tmp_path: Path) -> None:
    clock = Clock()
    e, vecs = _filled(tmp_path, clock)
    n = len(vecs)
    odd = {f"r{i}" for i in range(1, n, 2)}
    before = _reads(e, vecs)
    assert before["get"] == before["scroll"] == {f"r{i}" for i in range(n)}
    assert e.count() == n and e.facet("g").counts[(NUMBER_RANK, 0.0)] == n // 4
    clock.now = T0 + 10  # the even rows expire now: invisible at once, nothing swept yet
    after = _reads(e, vecs)
    for kind, ids in after.items():
        assert ids and ids <= odd, kind
    for kind in ("get", "scroll", "scroll filtered", "keyword", "group"):
        assert after[kind] == odd, kind
    # top-k is still k live rows (exact and HNSW)
    for exact in (True, False):
        got = e.search(vecs[:3], 10, exact=exact)
        assert (got.counts == 10).all() and set(got.ids.ravel().tolist()) <= odd
    assert e.count() == n // 2
    assert e.count(where=Cond("tag", "eq", "x")) == n // 2
    assert e.count(where_document=None, buckets=np.ones(1 << 12, dtype=np.bool_)) == n // 2
    facet = e.facet("g").counts
    assert sum(facet.values()) == n // 2 and (NUMBER_RANK, 0.0) not in facet  # g=0 rows are even
    info = e.info()
    assert info["count"] == n // 2 and info["expired_rows"] == n // 2 and info["swept_rows"] == 0
    # BM25 statistics count the visible documents only
    stats = e.keyword_stats(["common word1"])
    assert stats.doc_count == n // 2
    assert stats.queries[0].doc_freqs == (n // 2, len([i for i in range(1, n, 2) if i % 3 == 1]))
    e.close()


def test_rows_without_expiry_cost_no_mask(tmp_path: Path) -> None:
    clock = Clock()
    e = _engine(tmp_path, clock)
    vecs = np.random.default_rng(1).standard_normal((20, DIM)).astype(np.float32)
    _write(e, 1, [f"a{i}" for i in range(20)], vecs, None)
    assert e._slots.n_expiring == 0 and e._slots.expired() is None
    _write(e, 2, ["a0"], vecs[:1], [T0 + 5])
    assert e._slots.n_expiring == 1
    clock.now = T0 + 1
    assert e._slots.expired() is None  # none due yet: no scan
    _write(e, 3, ["a0"], vecs[:1], None)  # an upsert without expiry replaces it
    assert e._slots.n_expiring == 0
    clock.now = T0 + 100
    assert e.count() == 20
    e.close()


def test_sweep_removes_expired_rows_for_good(tmp_path: Path) -> None:
    clock = Clock()
    e, vecs = _filled(tmp_path, clock, 100)
    assert e.sweep(10) == 0  # nothing due
    clock.now = T0 + 11
    assert e.count() == 50 and e.sweep(100) == 0  # hidden at once, swept after the grace
    clock.now = T0 + 10 + SWEEP_GRACE_S
    sweeper = Sweeper(e, rows_per_s=1000)
    assert sweeper.step() == 50
    assert e.sweep(10) == 0
    info = e.info()
    assert info["swept_rows"] == 50 and info["expired_rows"] == 0 and info["count"] == 50
    assert len(e._slots) == 50 and e._slots.n_expiring == 0
    assert e._index._raw.get_current_count() - len(e._index._raw.get_ids_list()) == 0
    with e._index.lock.write():  # the swept labels are marked deleted in hnswlib already
        assert e._index.mark_deleted(np.arange(0, 100, 2, dtype=np.int64)) == 0
    db = sqlite3.connect(tmp_path / STORE_FILE)
    try:
        live, dead = db.execute(
            "SELECT SUM(deleted = 0), SUM(deleted = 1) FROM rows").fetchone()
        assert (live, dead) == (50, 50)
        seqs = {s for (s,) in db.execute("SELECT DISTINCT seq FROM rows")}
        assert seqs == {1}  # tombstones under the rows' own seq: no seq of the sweep's
        fts = db.execute("SELECT COUNT(*) FROM docs_fts WHERE docs_fts MATCH 'common'").fetchone()
        assert fts[0] == 50
    finally:
        db.close()
    assert e.applied_seq == 1
    # the freed slots are reused and the index gives no swept label back
    _write(e, 2, [f"n{i}" for i in range(50)], vecs[:50] + 100, None)
    got = e.search(vecs[:4], 100, exact=False)
    assert not {i for i in got.ids.ravel().tolist() if i} & {f"r{i}" for i in range(0, 100, 2)}
    e.close()


def test_expiry_survives_reopen_and_old_store_migrates(tmp_path: Path) -> None:
    clock = Clock()
    e, vecs = _filled(tmp_path, clock, 40)
    e.close()
    e = _engine(tmp_path, clock)
    assert e._slots.n_expiring == 20 and e.count() == 40
    clock.now = T0 + 10
    assert e.count() == 20
    e.close()
    # a store of the version before expiry: no expires_at column (nor staged expires)
    old = tmp_path / "old"
    e = _engine(old, clock)
    _write(e, 1, ["a", "b"], vecs[:2], None)
    e.close()
    db = sqlite3.connect(old / STORE_FILE)
    db.execute("ALTER TABLE rows DROP COLUMN expires_at")
    db.execute("ALTER TABLE staged DROP COLUMN expires")
    db.commit()
    db.close()
    e = _engine(old, clock)
    assert e.count() == 2
    _write(e, 2, ["c"], vecs[2:3], [T0 + 20])
    clock.now = T0 + 20
    assert e.count() == 2 and e.get(["c"]) == [None]
    # deleting an expired row tombstones it and counts it for nothing (it was invisible)
    e.stage(3, row_batch(ShardWrite(delete_ids=["a", "c"]), DIM, e.settings.metric))
    assert e.resolve(3, True).affected == 1
    assert e.count() == 1 and e._slots.n_expiring == 0
    e.close()


def test_update_keeps_or_changes_expiry(tmp_path: Path) -> None:
    clock = Clock()
    e = _engine(tmp_path, clock)
    vecs = np.random.default_rng(2).standard_normal((3, DIM)).astype(np.float32)
    _write(e, 1, ["a", "b", "c"], vecs, [T0 + 10, T0 + 10, 0.0])

    def upd(seq: int, ids: list[str], expires: list[float] | None, **kw: Any) -> Any:
        u = ShardUpdate(ids=ids, metadata_json=['{"k":1}'] * len(ids), documents=[],
                        expires_at=expires or [], **kw)  # fmt: skip
        e.stage(seq, update_plan(u))
        return e.resolve(seq, True)

    upd(2, ["a"], None)  # no expiry named: "a" keeps T0 + 10
    upd(3, ["b"], [0.0])  # cleared: "b" never expires
    upd(4, ["c"], [T0 + 5])  # set
    clock.now = T0 + 10
    assert [r is not None for r in e.get(["a", "b", "c"])] == [False, True, False]
    # an expired row is missing to an update; upsert_missing inserts it afresh
    ack = upd(5, ["a"], [T0 + 50])
    assert ack.missing_ids == ("a",) or list(ack.missing_ids) == ["a"]
    ack = upd(6, ["a"], None, upsert_missing=True, vectors=vecs[:1], insert_expires_at=T0 + 30)
    assert ack.inserted == 1 and e.get(["a"])[0] is not None
    clock.now = T0 + 30
    assert e.get(["a"]) == [None] and e.count() == 1
    # Accepted by the coordinator before "a" expired: found on every replica alike, though
    # this replica's clock says it has expired; the update names a new expiry, so it lives.
    ack = upd(7, ["a"], [T0 + 100], accepted_at=T0 + 29.5)
    assert ack.affected == 1 and not ack.missing_ids and e.get(["a"])[0] is not None
    e.close()


def test_catch_up_carries_absolute_expiry(tmp_path: Path) -> None:
    clock = Clock()
    src, _ = _filled(tmp_path / "a", clock, 30)
    dst = _engine(tmp_path / "b", clock)
    changes, seq = src.changes_since(0)
    dst.apply_changes(changes, seq)
    assert dst.count() == 30 and dst._slots.n_expiring == 15
    clock.now = T0 + 10
    assert dst.count() == 15
    # the peer swept: a replica behind learns the tombstones (each under its own seq)
    assert src.sweep(100, grace_s=0) == 15
    late = _engine(tmp_path / "c", clock)
    changes, seq = src.changes_since(0)
    late.apply_changes(changes, seq)
    assert late.count() == 15 and late.info()["expired_rows"] == 0
    for e in (src, dst, late):
        e.close()


def test_ttl_checks_name_the_field() -> None:
    for bad in (-1, float("nan"), float("inf"), 101 * 365 * 86400, True, "5"):
        with pytest.raises(InvalidArgument, match="ttl_seconds"):
            check_ttl(bad)
    assert check_ttl(0) == 0.0 and check_ttl(2.5) == 2.5
    now = 1000.0
    assert row_expiries([], [], 3, now) is None
    assert row_expiries([], [], 2, now, default_ttl=5) == [1005.0, 1005.0]
    assert row_expiries([10], [], 2, now, default_ttl=5) == [1010.0, 1010.0]
    assert row_expiries([0, 3], [], 2, now, default_ttl=5) == [0.0, 1003.0]
    assert row_expiries([], [2000.0, 0], 2, now) == [2000.0, 0.0]
    with pytest.raises(InvalidArgument, match="not both"):
        row_expiries([1], [2000.0], 1, now)
    with pytest.raises(InvalidArgument, match=r"ttl_seconds\[1\]"):
        row_expiries([1, -2], [], 2, now)
    with pytest.raises(InvalidArgument, match=r"expires_at\[0\]"):
        row_expiries([], [999.0], 1, now)  # in the past
    with pytest.raises(InvalidArgument, match=r"expires_at\[0\]"):
        row_expiries([], [now + 200 * 365 * 86400], 1, now)
    with pytest.raises(InvalidArgument, match="ttl_seconds: 2 values for 3 ids"):
        row_expiries([1, 2], [], 3, now)
