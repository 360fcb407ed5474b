"""`payload_on_disk`: a replica that keeps its rows' metadata texts and documents only in its
store (shard/payloads.py) answers every read exactly as one that holds them in memory, on the
same seeded rows (real ShardEngines, SQLite and hnswlib; no Ray); keeps the setting across a
reopen and a catch-up; and never gives a hit another id's payload while a writer rewrites
the hits, or when the store runs ahead of memory.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardvec.contract.buckets import NUM_BUCKETS
from shardvec.contract.filters import DocFilter, parse_where, parse_where_document
from shardvec.contract.groups import GroupBy, ShardGroupSearch
from shardvec.contract.settings import CollectionSpec, IndexSettings
from shardvec.contract.types import KeywordSearch, SearchResult, ShardScroll, ShardSearch
from shardvec.shard.engine import ShardEngine
from shardvec.shard.payloads import StaleRow, hit_payloads
from tests import inproc

DIM = 8
N = 400
WORDS = ["kafka", "raft", "paxos", "vector", "graph", "python"]


def _doc(i: int, v: int = 0) -> str | None:
    if i % 7 == 0:
        return None  # no document
    return f"row {i} about {WORDS[i % 6]} and {WORDS[(i // 6) % 6]} v{v}"


def _meta(i: int, v: int = 0) -> dict[str, Any]:
    md: dict[str, Any] = {"id": f"r{i}", "k": i % 5, "tag": WORDS[i % 3], "v": v}
    if i % 11 == 0:
        md = {}  # no metadata
    return md


def _load(e: ShardEngine) -> None:
    """The same rows, deletes and in-place updates on every engine."""
    rng = np.random.default_rng(7)
    vecs = rng.standard_normal((N, DIM)).astype(np.float32)
    ids = [f"r{i}" for i in range(N)]
    for seq, start in enumerate(range(0, N, 100), start=1):
        part = range(start, start + 100)
        inproc.write(e, seq, [ids[i] for i in part], vecs[list(part)],
                     [_meta(i) for i in part], [_doc(i) for i in part])  # fmt: skip
    inproc.delete(e, 10, [f"r{i}" for i in range(0, N, 13)])
    changed = list(range(1, 60, 4))
    inproc.update(e, 11, [f"r{i}" for i in changed], [{"v": 1} for _ in changed],
                  [_doc(i, 1) for i in changed])  # fmt: skip
    # freed slots taken by new ids
    new = rng.standard_normal((10, DIM)).astype(np.float32)
    inproc.write(e, 12, [f"n{i}" for i in range(10)], new, [{"id": f"n{i}"} for i in range(10)],
                 [f"new row {i} about raft" for i in range(10)])  # fmt: skip


def _open(path: Path, on_disk: bool) -> ShardEngine:
    settings = IndexSettings(dim=DIM, metric="cosine", payload_on_disk=on_disk)
    return ShardEngine(path, settings, build_threads=1, search_threads=1)


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ShardEngine, ShardEngine]]:
    mem = _open(tmp_path_factory.mktemp("mem"), False)
    disk = _open(tmp_path_factory.mktemp("disk"), True)
    for e in (mem, disk):
        _load(e)
    yield mem, disk
    mem.close()
    disk.close()


def _same(a: SearchResult, b: SearchResult) -> None:
    assert a.ids.tolist() == b.ids.tolist()
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.counts.tolist() == b.counts.tolist()
    for x, y in ((a.metadata, b.metadata), (a.documents, b.documents)):
        assert (x is None) == (y is None)
        if x is not None and y is not None:
            assert x.tolist() == y.tolist()


DOC_FILTERS: list[dict[str, Any]] = [
    {"$contains": "kafka"},
    {"$not_contains": "raft"},
    {"$and": [{"$contains": "python"}, {"$not_contains": "v1"}]},
    {"$or": [{"$contains": "graph"}, {"$contains": "v1"}]},
    {"$or": [{"$and": [{"$contains": "row 1"}, {"$not_contains": "paxos"}]},
             {"$contains": "new row"}]},
]
WHERE: list[dict[str, Any] | None] = [None, {"k": 2}, {"tag": {"$in": ["kafka", "raft"]}}]


def _queries(n: int = 6) -> np.ndarray:
    return np.random.default_rng(3).standard_normal((n, DIM)).astype(np.float32)


def test_the_setting_is_off_by_default_and_left_out_of_the_stored_settings() -> None:
    assert IndexSettings(dim=4).to_dict() == {
        "dim": 4, "metric": "cosine", "m": 16, "ef_construction": 200, "ef": 64,
        "text_tokenizer": "unicode61",
    }
    on = IndexSettings(dim=4, payload_on_disk=True)
    assert on.to_dict()["payload_on_disk"] is True
    assert IndexSettings.from_dict(on.to_dict()) == on
    spec = CollectionSpec("c", on, shards=2)
    assert CollectionSpec.from_json("c", spec.to_json()) == spec  # the registry's form


def test_memory_holds_no_texts_and_counts_its_bytes(
    engines: tuple[ShardEngine, ShardEngine],
) -> None:
    mem, disk = engines
    n = disk._slots.n_slots
    assert disk._rows.on_disk and not mem._rows.on_disk
    assert len(disk._rows._texts) == 0 and len(disk._rows._docs) == 0
    assert disk._rows.nbytes(n) == disk._rows.compact.nbytes(n) + 8 * n
    assert mem._rows.nbytes(n) > disk._rows.nbytes(n) + 30 * n  # the texts' characters
    with pytest.raises(RuntimeError):
        disk._rows.texts(np.arange(3))


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("where", WHERE)
def test_search_with_payloads_and_filters_is_the_same(
    engines: tuple[ShardEngine, ShardEngine], exact: bool, where: dict[str, Any] | None
) -> None:
    mem, disk = engines
    q = _queries()
    f = parse_where(where) if where is not None else None
    for wd in [None, *DOC_FILTERS]:
        d = parse_where_document(wd) if wd is not None else None
        got = [
            e.search(
                q, 10, where=f, where_document=d, exact=exact, include_metadata=True,
                include_documents=True,
            )
            for e in (mem, disk)
        ]
        _same(*got)
        assert got[0].counts.sum() > 0 or wd is not None


def _expected_count(e: ShardEngine, wd: DocFilter, where: dict[str, Any] | None) -> int:
    """Plain Python over the rows Get returns."""
    ids = e._slots.slot_to_id[np.flatnonzero(e._slots.alive)].tolist()
    recs = [r for r in e.get(ids, include_vectors=False, include_documents=True) if r]

    def passes(f: Any, doc: str) -> bool:
        if hasattr(f, "op"):
            return (f.text in doc) == (f.op == "contains")
        kids = [passes(c, doc) for c in f.children]
        return all(kids) if type(f).__name__ == "DocAnd" else any(kids)

    def where_ok(md: dict[str, Any]) -> bool:
        return where is None or md.get("k") == where["k"]

    return sum(passes(wd, r.document or "") and where_ok(r.metadata or {}) for r in recs)


@pytest.mark.parametrize("wd", DOC_FILTERS)
def test_count_and_facets_with_where_document_are_the_same(
    engines: tuple[ShardEngine, ShardEngine], wd: dict[str, Any]
) -> None:
    mem, disk = engines
    d = parse_where_document(wd)
    for where in (None, {"k": 1}):  # every row (one SQL pass), few candidates (by slot)
        f = parse_where(where) if where is not None else None
        counts = [e.count(f, d) for e in (mem, disk)]
        assert counts[0] == counts[1] == _expected_count(disk, d, where)
        facets = [e.facet("tag", f, d).counts for e in (mem, disk)]
        assert facets[0] == facets[1]


def test_keyword_search_with_payloads_is_the_same(
    engines: tuple[ShardEngine, ShardEngine],
) -> None:
    mem, disk = engines
    for wd in [None, {"$not_contains": "v1"}, {"$contains": "row 2"}]:
        d = parse_where_document(wd) if wd is not None else None
        got = []
        for e in (mem, disk):
            stats = e.keyword_stats(["kafka python", "raft"])
            req = KeywordSearch(stats.queries, stats.doc_count, stats.total_tokens, 10,
                                include_metadata=True, include_documents=True,
                                where_document=d)  # fmt: skip
            got.append(e.keyword_search(req))
        _same(*got)
        assert got[1].counts.sum() > 0


def test_group_by_with_payloads_is_the_same(engines: tuple[ShardEngine, ShardEngine]) -> None:
    mem, disk = engines
    for wd in [None, {"$contains": "about"}]:
        d = parse_where_document(wd) if wd is not None else None
        s = ShardSearch(_queries(3), 0, exact=True, include_metadata=True,
                        include_documents=True, where_document=d)  # fmt: skip
        got = [e.group_search(ShardGroupSearch(s, GroupBy("tag", 3, 2))) for e in (mem, disk)]
        _same(got[0].hits, got[1].hits)
        assert got[0].keys.tolist() == got[1].keys.tolist()
        assert got[1].hits.counts.sum() > 0


def test_get_and_scroll_are_the_same(engines: tuple[ShardEngine, ShardEngine]) -> None:
    mem, disk = engines
    ids = [f"r{i}" for i in range(0, 40)] + ["n3", "missing"]
    kw: dict[str, Any] = {"include_vectors": False, "include_documents": True}
    assert mem.get(ids, **kw) == disk.get(ids, **kw)
    req = ShardScroll(0, "", NUM_BUCKETS, 1000, include_metadata=True, include_documents=True,
                      where_document=parse_where_document({"$contains": "kafka"}))  # fmt: skip
    a, b = mem.scroll(req), disk.scroll(req)
    assert a.ids == b.ids and a.metadata_json == b.metadata_json and a.documents == b.documents
    assert a.ids


def test_the_setting_survives_a_reopen_and_answers_stay_the_same(tmp_path: Path) -> None:
    e = _open(tmp_path / "r", True)
    _load(e)
    q = _queries()
    before = e.search(q, 10, include_metadata=True, include_documents=True, exact=True)
    e.close()
    again = ShardEngine(tmp_path / "r", IndexSettings(dim=DIM, payload_on_disk=True))
    try:
        assert again._rows.on_disk
        assert again.info()["settings"]["payload_on_disk"] is True
        after = again.search(q, 10, include_metadata=True, include_documents=True, exact=True)
        _same(before, after)
        # every live slot's seq is the store's (recovery reads them): no read is stale
        held = np.flatnonzero(again._slots.alive)
        texts, docs = hit_payloads(again, held, True, True, settle=False)
        assert texts is not None and docs is not None
        assert sum(bool(t) for t in texts.tolist()) > N // 2
    finally:
        again.close()


def test_catch_up_keeps_each_rows_own_seq(tmp_path: Path) -> None:
    """A replica filled from a peer's changes (each row under the peer's seq) reads every
    hit's payload from its store without meeting a stale slot."""
    src = _open(tmp_path / "src", False)
    dst = _open(tmp_path / "dst", True)
    try:
        _load(src)
        changes, seq = src.changes_since(0)
        dst.apply_changes(changes, seq)
        held = np.flatnonzero(dst._slots.alive)
        texts, docs = hit_payloads(dst, held, True, True, settle=False)
        assert texts is not None and docs is not None
        ids = dst._slots.slot_to_id[held].tolist()
        want = {r.id: r for r in src.get(ids, include_vectors=False, include_documents=True) if r}
        for rid, t, d in zip(ids, texts.tolist(), docs.tolist(), strict=True):
            assert json.loads(t or "{}") == want[rid].metadata
            assert d == (want[rid].document or "")
        q = _queries()
        _same(
            src.search(q, 10, include_metadata=True, include_documents=True, exact=True),
            dst.search(q, 10, include_metadata=True, include_documents=True, exact=True),
        )
    finally:
        src.close()
        dst.close()


def test_a_store_ahead_of_memory_never_gives_another_ids_payload(tmp_path: Path) -> None:
    """A batch committed to the store and not yet applied in memory (written here straight
    to the store): a slot that now holds another id, and a row rewritten in place. A read
    without `settle` is refused (StaleRow); the settled read gives the newest committed
    version of the hit's own id ("" for a row deleted since), and document tests judge by it."""
    e = _open(tmp_path / "r", True)
    try:
        _load(e)
        slot_a, slot_b = e._slots.id_to_slot["r1"], e._slots.id_to_slot["r2"]
        vec = np.zeros(DIM, dtype="<f4").tobytes()
        # r1 deleted and its slot given to "x"; r2's metadata and document rewritten
        e._store.write(
            None,
            upserts=[("x", slot_a, 99, vec, '{"id":"x"}', "x kafka")],
            tombstones=[("r1", 99)],
            updates=[(99, '{"id":"r2","v":9}', "r2 rewritten kafka", "r2", None)],
        )
        labels = np.array([[slot_a, slot_b, -1]], dtype=np.int64)
        with pytest.raises(StaleRow):
            hit_payloads(e, labels, True, True, settle=False)
        texts, docs = hit_payloads(e, labels, True, True, settle=True)
        assert texts is not None and docs is not None
        assert texts.tolist() == [["", '{"id":"r2","v":9}', ""]]
        assert docs.tolist() == [["", "r2 rewritten kafka", ""]]
        # the engine's reads retry, then settle the same way
        res = e.search(_queries(2), N, exact=True, include_metadata=True)
        assert res.metadata is not None
        for rid, text in zip(res.ids.ravel().tolist(), res.metadata.ravel().tolist(),
                             strict=True):  # fmt: skip
            if rid and text:
                assert json.loads(text).get("id", rid) == rid
        kafka = parse_where_document({"$contains": "kafka"})
        live = e._slots.slot_to_id[np.flatnonzero(e._slots.alive)].tolist()
        want = sum(
            "kafka" in (r.document or "")
            for r in e.get(live, include_vectors=False, include_documents=True) if r
        )
        assert e.count(None, kafka) == want  # r2 judged by its new document, r1 gone
    finally:
        e.close()


def test_a_concurrent_writer_never_gives_a_hit_another_ids_payload(tmp_path: Path) -> None:
    """A writer rewrites the rows (metadata and document naming the id and a version), deletes
    some and gives their slots to new ids, while readers search with payloads: every hit's
    payload names its own id, its document and metadata of one version (or is empty, for a
    row the writer deleted during the search)."""
    e = _open(tmp_path / "r", True)
    rng = np.random.default_rng(5)
    n = 120
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    ids = [f"r{i}" for i in range(n)]
    inproc.write(e, 1, ids, vecs, [{"id": r, "v": 0} for r in ids],
                 [f"{r} v0 kafka" for r in ids])  # fmt: skip
    done = threading.Event()
    version = [0]
    failures: list[str] = []

    def writer() -> None:
        seq = 2
        try:
            for v in range(1, 60):
                part = [ids[i] for i in rng.choice(n, 40, replace=False)]
                inproc.write(e, seq, part, vecs[[ids.index(p) for p in part]],
                             [{"id": p, "v": v} for p in part],
                             [f"{p} v{v} kafka" for p in part])  # fmt: skip
                seq += 1
                gone = f"g{v - 1}"
                inproc.delete(e, seq, [gone])
                seq += 1
                inproc.write(e, seq, [f"g{v}"], vecs[:1], [{"id": f"g{v}", "v": v}],
                             [f"g{v} v{v} kafka"])  # fmt: skip
                seq += 1
                version[0] = v
        except Exception as exc:  # surfaced below
            failures.append(repr(exc))
        finally:
            done.set()

    def reader() -> None:
        q = vecs[:8]
        wd = parse_where_document({"$contains": "kafka"})
        while not done.is_set():
            res = e.search(q, 20, include_metadata=True, include_documents=True,
                           where_document=wd)  # fmt: skip
            if res.metadata is None or res.documents is None:
                failures.append("no payloads")
                return
            for rid, text, doc in zip(res.ids.ravel().tolist(), res.metadata.ravel().tolist(),
                                      res.documents.ravel().tolist(), strict=True):  # fmt: skip
                if not rid:
                    continue
                if not text and not doc and rid.startswith("g"):
                    continue  # deleted during the search, at the last try
                md = json.loads(text)
                if md["id"] != rid or not doc.startswith(f"{rid} v{md['v']} "):
                    failures.append(f"{rid}: {text!r} {doc!r}")

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader)
                                                   for _ in range(2)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    try:
        assert not any(t.is_alive() for t in threads)
        assert not failures, failures[:5]
        assert version[0] == 59
    finally:
        e.close()


def test_a_quiet_store_is_tested_the_quick_way_and_a_write_under_way_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no write of rows since memory last caught up, a document test asks SQL for the
    matching slots only; with a write committed and not yet applied it compares every row."""
    e = _open(tmp_path / "r", True)
    try:
        _load(e)
        calls: list[bool] = []
        real = e._store.documents_holding

        def spy(*args: Any, **kw: Any) -> list[tuple[Any, ...]]:
            calls.append(bool(kw.get("hits_only")))
            return real(*args, **kw)

        monkeypatch.setattr(e._store, "documents_holding", spy)
        kafka = parse_where_document({"$contains": "kafka"})
        quiet = e.count(None, kafka)
        assert calls == [True]
        e._store.write(None, updates=[(99, '{"id":"r2"}', "r2 now kafka", "r2", None)])
        calls.clear()
        assert e.count(None, kafka) == quiet + ("kafka" not in (_doc(2) or ""))
        assert calls and not any(calls)
    finally:
        e.close()
