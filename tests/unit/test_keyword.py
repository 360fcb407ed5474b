"""Keyword search on one replica, without Ray: BM25 equal to FTS5's own bm25(), the full-text
index in step with the rows through every write path, the migration of older stores, query
text that is never FTS5 syntax; and the fusions (RRF, weighted) with hand-computed values."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardvec.contract.errors import InvalidArgument
from shardvec.contract.filters import DocCond
from shardvec.contract.keyword import (
    Fusion,
    check_terms,
    fusion_from_request,
    leg_depth,
    validate_text_queries,
)
from shardvec.contract.limits import MAX_TEXT_QUERY_BYTES, MAX_TEXT_QUERY_TERMS
from shardvec.contract.settings import IndexSettings
from shardvec.contract.store_copy import STORE_FILE
from shardvec.contract.types import Hits, KeywordSearch, KeywordTerms
from shardvec.coordinator.queries.fusion import fuse_hits, normalise, rrf, weighted
from shardvec.coordinator.queries.keyword_search import merge_stats
from shardvec.shard.bm25 import MIN_IDF, idf, varint
from shardvec.shard.engine import ShardEngine
from shardvec.v1 import vector_search_pb2 as pb
from tests import inproc

DOCS = [
    "kafka consumer for python",
    "python client for the kafka streaming platform, kafka python kafka",
    "a python library",
    "fast json parsing for python",
    "running runs ran runner",
    "NEAR col:foo ^bar * (AND OR NOT) \"quoted\"",
    "postgres driver",
    "python python python python python",
]


def _fts_reference(
    docs: list[str], query_terms: list[str], tokenizer: str = "unicode61"
) -> dict[int, float]:
    """FTS5's bm25() (negated: higher is better) of each matching row of one table over
    `docs`, the query an OR of the quoted terms."""
    db = sqlite3.connect(":memory:")
    clause = "porter unicode61" if tokenizer == "porter" else "unicode61"
    db.execute(f"CREATE VIRTUAL TABLE t USING fts5(x, tokenize='{clause}')")
    db.executemany("INSERT INTO t(rowid, x) VALUES (?, ?)", enumerate(docs))
    q = " OR ".join('"' + t.replace('"', '""') + '"' for t in query_terms)
    return {int(r): -float(s) for r, s in db.execute(
        "SELECT rowid, bm25(t) FROM t WHERE t MATCH ?", (q,)
    )}


def _engine(
    tmp: Path, docs: list[str | None], tokenizer: str = "unicode61", seq: int = 1
) -> ShardEngine:
    e = ShardEngine(tmp, IndexSettings(dim=4, text_tokenizer=tokenizer), checkpoint_rows=1 << 40)
    rng = np.random.default_rng(0)
    ids = [str(i) for i in range(len(docs))]
    inproc.write(e, seq, ids, rng.standard_normal((len(docs), 4)).astype(np.float32),
             [{"i": i} for i in range(len(docs))], docs)
    return e


def _search(e: ShardEngine, texts: list[str], k: int = 10, **kw: Any) -> Any:
    stats = e.keyword_stats(texts)
    request = KeywordSearch(stats.queries, stats.doc_count, stats.total_tokens, k, **kw)
    return e.keyword_search(request)


@pytest.mark.parametrize("tokenizer", ["unicode61", "porter"])
@pytest.mark.parametrize(
    "text", ["python kafka", "kafka kafka python", "for python the", "running"]
)
def test_scores_equal_fts5_bm25(tmp_path: Path, tokenizer: str, text: str) -> None:
    e = _engine(tmp_path, list(DOCS), tokenizer)
    terms = list(e.keyword_stats([text]).queries[0].terms)
    ref = _fts_reference(DOCS, terms, tokenizer)
    got = _search(e, [text])
    n = int(got.counts[0])
    assert n == len(ref) > 0
    for rid, score in zip(got.ids[0, :n], got.scores[0, :n], strict=True):
        assert score == pytest.approx(ref[int(rid)], rel=1e-5)
    assert list(got.scores[0, :n]) == sorted(got.scores[0, :n], reverse=True)
    e.close()


def test_idf_clamps_like_fts5() -> None:
    # a term in more than half the rows has idf ln(<1) < 0, which FTS5 raises to 1e-6
    assert idf(10, [9])[0] == MIN_IDF
    assert idf(10, [1])[0] == pytest.approx(math.log(9.5 / 1.5))
    assert varint(bytes([0x81, 0x40])) == (192, 2)
    assert varint(bytes([0x05])) == (5, 1)


def test_porter_stems_and_unicode61_does_not(tmp_path: Path) -> None:
    e = _engine(tmp_path / "p", ["he runs", "a runner", "running fast"], "porter")
    assert set(_search(e, ["run"]).ids[0]) - {""} == {"0", "2"}
    e.close()
    e = _engine(tmp_path / "u", ["he runs", "a runner", "running fast"])
    assert int(_search(e, ["run"]).counts[0]) == 0
    e.close()


def test_query_text_is_never_fts5_syntax(tmp_path: Path) -> None:
    e = _engine(tmp_path, list(DOCS))
    stats = e.keyword_stats(['NEAR("x" y, 2) col:foo ^bar * (AND OR NOT) "un"balanced'])
    assert stats.queries[0].terms == (
        "near", "x", "y", "2", "col", "foo", "bar", "and", "or", "not", "un", "balanced"
    )
    got = _search(e, ['NEAR col:foo ^bar * (AND OR NOT) "quoted'])
    assert got.ids[0, 0] == "5"  # the words match the row that holds them, as words
    assert e.keyword_stats(["* ^ () \" :"]).queries[0].terms == ()
    e.close()


def _check_in_step(e: ShardEngine, directory: Path) -> None:
    """The index holds exactly the live rows' documents: the same statistics and scores as
    one FTS5 table built now from the rows."""
    db = sqlite3.connect(directory / STORE_FILE)
    live = db.execute(
        "SELECT slot, document FROM rows WHERE deleted = 0 AND document IS NOT NULL"
    ).fetchall()
    db.close()
    ref = sqlite3.connect(":memory:")
    ref.execute("CREATE VIRTUAL TABLE t USING fts5(x)")
    ref.executemany("INSERT INTO t(rowid, x) VALUES (?, ?)", live)
    ref.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'row')")
    want = dict(ref.execute("SELECT term, doc FROM v").fetchall())
    stats = e.keyword_stats([" ".join(sorted(want)) or "nothing"])
    assert stats.doc_count == len(live)
    assert dict(zip(stats.queries[0].terms, stats.queries[0].doc_freqs, strict=True)) == (
        want or {"nothing": 0}
    )
    ref.execute("CREATE VIRTUAL TABLE c USING fts5vocab(t, 'col')")
    assert stats.total_tokens == (ref.execute("SELECT sum(cnt) FROM c").fetchone()[0] or 0)


def test_index_follows_every_write_path(tmp_path: Path) -> None:
    e = _engine(tmp_path / "a", ["alpha beta", "beta gamma", None, "delta"])
    _check_in_step(e, tmp_path / "a")
    vec = np.ones((2, 4), np.float32)
    inproc.write(e, 2, ["0", "9"], vec, [{}, {}], ["omega", "beta beta"])  # re-upsert + new row
    _check_in_step(e, tmp_path / "a")
    inproc.delete(e, 3, ["1"], None)
    _check_in_step(e, tmp_path / "a")
    inproc.update(e, 4, ["3", "2"], None, ["epsilon", "zeta now"])  # update in place, doc added
    _check_in_step(e, tmp_path / "a")
    assert set(_search(e, ["zeta"]).ids[0]) - {""} == {"2"}
    e.stage(5, inproc.rows(e, ["7"], vec[:1], delete_ids=["0"], documents=["eta theta"]))
    assert int(_search(e, ["eta"]).counts[0]) == 0
    e.resolve(5, True)
    _check_in_step(e, tmp_path / "a")
    assert list(_search(e, ["eta"]).ids[0, :1]) == ["7"]
    assert int(_search(e, ["omega"]).counts[0]) == 0  # "0" was deleted by the staged batch
    # catch-up copies the changes into an empty replica: the same index
    b = ShardEngine(tmp_path / "b", IndexSettings(dim=4), checkpoint_rows=1 << 40)
    b.apply_changes(*e.changes_since(0))
    _check_in_step(b, tmp_path / "b")
    for text in ["beta", "eta zeta", "epsilon delta"]:
        x, y = _search(e, [text]), _search(b, [text])  # ties may order by slot
        n = int(x.counts[0])
        assert n == int(y.counts[0]) > 0
        assert dict(zip(x.ids[0, :n], x.scores[0, :n], strict=True)) == pytest.approx(
            dict(zip(y.ids[0, :n], y.scores[0, :n], strict=True))
        )
    b.close()
    e.close()
    e = ShardEngine(tmp_path / "a", IndexSettings(dim=4))  # reopened: durable with the rows
    _check_in_step(e, tmp_path / "a")
    e.close()


def test_filters_apply_to_keyword_search(tmp_path: Path) -> None:
    e = _engine(tmp_path, list(DOCS))
    from shardvec.contract.filters import parse_where

    got = _search(e, ["python"], where=parse_where({"i": {"$gte": 3}}))
    assert set(got.ids[0]) - {""} == {"3", "7"}
    got = _search(e, ["python"], where_document=DocCond("contains", "kafka"),
                  include_documents=True, include_metadata=True)
    assert set(got.ids[0]) - {""} == {"0", "1"}
    assert got.documents[0, 0] == DOCS[int(got.ids[0, 0])]
    e.close()


def test_an_old_store_gains_the_index_once_and_a_new_tokenizer_rebuilds_it(tmp_path: Path) -> None:
    e = _engine(tmp_path, ["running shoes", "run fast"])
    e.close()
    db = sqlite3.connect(tmp_path / STORE_FILE)
    for trigger in ("rows_fts_insert", "rows_fts_delete", "rows_fts_update"):
        db.execute(f"DROP TRIGGER {trigger}")
    for table in ("docs_fts_inst", "docs_fts_row", "docs_fts"):
        db.execute(f"DROP TABLE {table}")
    db.execute("DELETE FROM kv WHERE key = 'fts'")
    db.commit()
    db.close()
    for _ in range(2):  # built on the first open, left alone on the second
        e = ShardEngine(tmp_path, IndexSettings(dim=4))
        assert list(_search(e, ["running"]).ids[0, :1]) == ["0"]
        _check_in_step(e, tmp_path)
        e.close()
    e = ShardEngine(tmp_path, IndexSettings(dim=4, text_tokenizer="porter"))
    assert set(_search(e, ["running"]).ids[0]) - {""} == {"0", "1"}
    e.close()


def test_no_documents_answers_empty(tmp_path: Path) -> None:
    e = _engine(tmp_path, [None, None])
    got = _search(e, ["anything"])
    assert int(got.counts[0]) == 0 and e.keyword_stats(["x"]).doc_count == 0
    e.close()


def test_stats_merge_sums_and_refuses_different_cuts() -> None:
    from shardvec.contract.errors import Unavailable
    from shardvec.contract.types import KeywordStats

    a = KeywordStats([KeywordTerms(("x", "y"), (1, 2))], 10, 100)
    b = KeywordStats([KeywordTerms(("x", "y"), (3, 0))], 5, 40)
    m = merge_stats([a, b])
    assert m.queries[0].doc_freqs == (4, 2) and (m.doc_count, m.total_tokens) == (15, 140)
    with pytest.raises(Unavailable):
        merge_stats([a, KeywordStats([KeywordTerms(("x",), (1,))], 1, 1)])


# Fusion.


def test_rrf_by_hand() -> None:
    got = rrf([["a", "b", "c"], ["c", "a", "d"]], k=4, rrf_k=60)
    want = {"a": 1 / 61 + 1 / 62, "b": 1 / 62, "c": 1 / 63 + 1 / 61, "d": 1 / 63}
    assert [r for r, _ in got] == ["a", "c", "b", "d"]
    for rid, score in got:
        assert score == pytest.approx(want[rid])
    # ties: equal fused scores order by the best rank reached, then id
    assert [r for r, _ in rrf([["x", "y"], ["y", "x"]], k=2)] == ["x", "y"]


def test_weighted_by_hand() -> None:
    assert list(normalise([3.0, 1.0, 2.0])) == [1.0, 0.0, 0.5]
    assert list(normalise([0.1, 0.3], higher_is_better=False)) == [1.0, 0.0]
    assert list(normalise([2.0, 2.0])) == [1.0, 1.0]
    vec = (["a", "b", "c"], np.array([0.9, 0.8, 0.5], np.float32))
    kw = (["c", "d"], np.array([12.0, 2.0], np.float32))
    got = dict(weighted(vec, kw, k=4, alpha=0.25))
    assert got["a"] == pytest.approx(0.25 * 1.0)
    assert got["b"] == pytest.approx(0.25 * (0.3 / 0.4))
    assert got["c"] == pytest.approx(0.25 * 0.0 + 0.75 * 1.0)
    assert got["d"] == pytest.approx(0.0)
    assert [r for r, _ in weighted(vec, kw, k=2, alpha=0.25)] == ["c", "a"]
    # alpha 1: the vector ranking; alpha 0: the keyword ranking first
    assert [r for r, _ in weighted(vec, kw, k=3, alpha=1.0)] == ["a", "b", "c"]
    assert [r for r, _ in weighted(vec, kw, k=1, alpha=0.0)] == ["c"]


def _hits(rows: list[list[str]], scores: list[list[float]], k: int) -> Hits:
    ids = np.full((len(rows), k), "", dtype=object)
    sc = np.full((len(rows), k), np.nan, dtype=np.float32)
    docs = np.full((len(rows), k), "", dtype=object)
    for i, (r, s) in enumerate(zip(rows, scores, strict=True)):
        ids[i, : len(r)], sc[i, : len(s)] = r, s
        docs[i, : len(r)] = [f"doc {x}" for x in r]
    return Hits(ids, sc, np.array([len(r) for r in rows], np.int32), documents=docs)


def test_fuse_hits_keeps_payloads_and_euclidean_direction() -> None:
    vec = _hits([["a", "b"]], [[0.1, 0.9]], 3)  # euclidean distances: a nearest
    kw = _hits([["b", "c"]], [[5.0, 1.0]], 3)
    got = fuse_hits(vec, kw, 3, Fusion("weighted", alpha=0.5), vector_higher_is_better=False)
    assert list(got.ids[0]) == ["b", "a", "c"] or list(got.ids[0]) == ["a", "b", "c"]
    assert got.documents is not None
    assert [got.documents[0, j] for j in range(3)] == [f"doc {x}" for x in got.ids[0]]
    got = fuse_hits(vec, kw, 2, Fusion("rrf"), vector_higher_is_better=False)
    assert list(got.ids[0]) == ["b", "a"] and int(got.counts[0]) == 2


# Contract checks.


def _req(**kw: Any) -> Any:
    return pb.SearchRequest(collection="c", k=5, **kw)


def test_fusion_parameters_are_checked() -> None:
    assert fusion_from_request(_req(), hybrid=True) == Fusion("rrf", rrf_k=60)
    assert fusion_from_request(_req(fusion="weighted", alpha=0.2), True).alpha == pytest.approx(0.2)
    for kw, fragment in [
        ({"fusion": "max"}, "fusion: must be one of"),
        ({"fusion": "weighted", "alpha": 1.5}, "alpha: must be in [0, 1]"),
        ({"fusion": "weighted", "alpha": float("nan")}, "alpha: must be in [0, 1]"),
        ({"fusion": "rrf", "alpha": 0.5}, 'alpha: only with fusion "weighted"'),
        ({"rrf_k": 20_000}, "rrf_k: must be in [1, 10000]"),
        ({"fusion": "weighted", "rrf_k": 3}, 'rrf_k: only with fusion "rrf"'),
    ]:
        with pytest.raises(InvalidArgument, match=fragment.replace("[", r"\[")):
            fusion_from_request(_req(**kw), hybrid=True)
    with pytest.raises(InvalidArgument, match="need a hybrid search"):
        fusion_from_request(_req(fusion="rrf"), hybrid=False)
    assert leg_depth(10, 1000) == 40 and leg_depth(400, 1000) == 1000 and leg_depth(5, 3) == 5


def test_text_queries_are_checked() -> None:
    assert validate_text_queries(["ok"]) == ["ok"]
    with pytest.raises(InvalidArgument, match=r"text_query\[1\]: empty"):
        validate_text_queries(["ok", "  "])
    too_long = rf"text_query\[0\]: {MAX_TEXT_QUERY_BYTES + 1} bytes"
    with pytest.raises(InvalidArgument, match=too_long):
        validate_text_queries(["x" * (MAX_TEXT_QUERY_BYTES + 1)])
    with pytest.raises(InvalidArgument, match="no searchable words"):
        check_terms([KeywordTerms((), ())])
    many = tuple(f"t{i}" for i in range(MAX_TEXT_QUERY_TERMS + 1))
    with pytest.raises(InvalidArgument, match=f"{MAX_TEXT_QUERY_TERMS + 1} terms"):
        check_terms([KeywordTerms(many, (0,) * len(many))])
