"""Documents, where_document and Update through the public service over in-process replicas
(real ShardEngines, SQLite and hnswlib; no Ray), and the store's migration of old stores.

Every expectation is computed from the rows the test wrote, by plain Python substring tests.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardvec.contract.errors import InvalidArgument, ShardvecError
from shardvec.contract.filters import DocAnd, DocCond, DocOr, parse_where_document
from shardvec.contract.settings import IndexSettings
from shardvec.coordinator.api.decoding import describe_problem
from shardvec.shard.engine import ShardEngine
from shardvec.shard.store import Store
from shardvec.v1 import common_pb2
from shardvec.v1 import vector_search_pb2 as pb
from tests import inproc
from tests.requests import search_request, upsert_request
from tests.seeded import Seeded, open_seeded
from tests.wire_bytes import len_field

DIM = 8


def _upsert(name: str, ids: list[str], vectors: Any, metas: list[str] | None = None) -> Any:
    return upsert_request(name, ids, vectors, metas, dim=DIM)


def _search(name: str, queries: Any, k: int = 5, **kw: Any) -> Any:
    return search_request(name, queries, k, dim=DIM, **kw)
N = 300
WORDS = ["kafka", "raft", "paxos", "vector", "graph"]
NAME = "docs_main"


def _doc(i: int) -> str:
    if i % 7 == 0:
        return ""  # no document
    return f"row {i} about {WORDS[i % 5]} and {WORDS[(i // 5) % 5]}"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    s = open_seeded(
        tmp_path_factory.mktemp("docs"), NAME, 2, N, lambda i: json.dumps({"i": i}), seed=11
    )
    req = _upsert(NAME, s.ids, s.vectors, s.metas)
    req.documents.extend(_doc(i) for i in range(N))
    s.call("Upsert", req)
    yield s
    s.close()


def _wd(d: dict[str, Any]) -> common_pb2.DocumentFilter:
    from shardvec.contract.convert import where_document_to_proto

    return where_document_to_proto(parse_where_document(d))


def _expect(f: Any, doc: str) -> bool:
    if isinstance(f, DocCond):
        return (f.text in doc) == (f.op == "contains")
    if isinstance(f, DocAnd):
        return all(_expect(c, doc) for c in f.children)
    assert isinstance(f, DocOr)
    return any(_expect(c, doc) for c in f.children)


def test_documents_round_trip_through_get_and_search(seeded: Seeded) -> None:
    get = pb.GetRequest(collection=NAME, ids=seeded.ids[:20])
    get.include.documents = True
    got = seeded.call("Get", get)
    assert list(got.documents) == [_doc(i) for i in range(20)]
    req = _search(NAME, seeded.vectors[:3], k=4, exact=True)
    req.include.documents = True
    res = seeded.call("Search", req)
    for q in range(3):
        assert res.results[q].ids[0] == seeded.ids[q]
        assert res.results[q].documents[0] == _doc(q)
        assert len(res.results[q].documents) == len(res.results[q].ids)


WHERE_DOCS = [
    {"$contains": "kafka"},
    {"$not_contains": "raft"},
    {"$and": [{"$contains": "paxos"}, {"$not_contains": "graph"}]},
    {"$or": [{"$contains": "row 1"}, {"$contains": "vector"}]},
]


@pytest.mark.parametrize("wd", WHERE_DOCS, ids=["contains", "not_contains", "and", "or"])
def test_where_document_alone_and_with_metadata_and_vectors(seeded: Seeded, wd: dict) -> None:
    f = parse_where_document(wd)
    passing = {i for i in range(N) if _expect(f, _doc(i))}
    count = pb.CountRequest(collection=NAME, where_document=_wd(wd))
    assert seeded.call("Count", count).count == len(passing)
    meta = common_pb2.Filter()
    meta.condition.field, meta.condition.op = "i", common_pb2.Condition.LT
    meta.condition.value_json = "150"
    both = {i for i in passing if i < 150}
    count = pb.CountRequest(collection=NAME, where_document=_wd(wd), filter=meta)
    assert seeded.call("Count", count).count == len(both)
    q = seeded.vectors[5:7]
    for exact in (True, False):
        req = _search(NAME, q, k=10, exact=exact, where_document=_wd(wd), filter=meta)
        req.include.documents = True
        res = seeded.call("Search", req)
        for r in res.results:
            rows = [int(i[1:]) for i in r.ids]
            assert len(rows) == min(10, len(both))
            assert set(rows) <= both
            assert list(r.documents) == [_doc(i) for i in rows]
        if exact:  # exact: the true top 10 of the passing rows
            sims = (seeded.vectors / np.linalg.norm(seeded.vectors, axis=1)[:, None]) @ (
                q[0] / np.linalg.norm(q[0])
            )
            best = sorted(both, key=lambda i: -sims[i])[:10]
            assert [int(i[1:]) for i in res.results[0].ids] == best


def test_update_merges_replaces_and_is_visible_at_once(seeded: Seeded) -> None:
    ids = seeded.ids[200:204]
    req = pb.UpdateRequest(
        collection=NAME,
        ids=[*ids, "nope"],
        metadata_json=[json.dumps({"tag": "new"})] * 5,
        documents=["updated kafka text", "", "", "", "x"],
    )
    resp = seeded.call("Update", req)
    assert resp.updated == 4 and list(resp.missing_ids) == ["nope"] and resp.inserted == 0
    get = pb.GetRequest(collection=NAME, ids=ids)
    get.include.metadata = get.include.documents = get.include.vectors = True
    got = seeded.call("Get", get)
    assert [json.loads(m) for m in got.metadata_json] == [
        {"i": 200 + j, "tag": "new"} for j in range(4)
    ]
    assert list(got.documents) == ["updated kafka text", _doc(201), _doc(202), _doc(203)]
    np.testing.assert_array_equal(  # vectors kept
        np.frombuffer(got.vectors.packed, "<f4").reshape(-1, DIM), seeded.vectors[200:204]
    )
    tag = common_pb2.Filter()
    tag.condition.field, tag.condition.op, tag.condition.value_json = "tag", 1, '"new"'
    assert seeded.call("Count", pb.CountRequest(collection=NAME, filter=tag)).count == 4
    wd = _wd({"$contains": "updated kafka"})
    assert seeded.call("Count", pb.CountRequest(collection=NAME, where_document=wd)).count == 1
    replace = pb.UpdateRequest(
        collection=NAME, ids=ids[:1], metadata_json=['{"only": 1}'], replace_metadata=True
    )
    assert seeded.call("Update", replace).updated == 1
    got = seeded.call(
        "Get", pb.GetRequest(collection=NAME, ids=ids[:1], include={"metadata": True})
    )
    assert json.loads(got.metadata_json[0]) == {"only": 1}
    # restore the seeded state for the other tests
    undo = pb.UpdateRequest(
        collection=NAME,
        ids=ids,
        metadata_json=[json.dumps({"i": 200 + j}) for j in range(4)],
        replace_metadata=True,
        documents=[_doc(200 + j) or "" for j in range(4)],
    )
    seeded.call("Update", undo)


def test_update_upsert_missing(seeded: Seeded) -> None:
    before = seeded.call("Count", pb.CountRequest(collection=NAME)).count
    bad = pb.UpdateRequest(
        collection=NAME, ids=[seeded.ids[0], "fresh-1"], documents=["a", "b"], upsert_missing=True
    )
    with pytest.raises(InvalidArgument, match=r"ids\[1\]: 'fresh-1' is not in the collection"):
        seeded.call("Update", bad)
    get = pb.GetRequest(collection=NAME, ids=[seeded.ids[0]], include={"documents": True})
    assert list(seeded.call("Get", get).documents) == [_doc(0)]  # nothing half-applied
    ok = pb.UpdateRequest(
        collection=NAME, ids=["fresh-1"], documents=["brand new"], upsert_missing=True
    )
    ok.vectors.dim = DIM
    ok.vectors.packed = np.ones((1, DIM), "<f4").tobytes()
    resp = seeded.call("Update", ok)
    assert resp.inserted == 1 and resp.updated == 0
    assert seeded.call("Count", pb.CountRequest(collection=NAME)).count == before + 1
    seeded.call("Delete", pb.DeleteRequest(collection=NAME, ids=["fresh-1"]))


def _limited(seeded: Seeded, **limits: int) -> None:
    from shardvec.coordinator.config import CoordinatorSettings

    seeded.service.settings = CoordinatorSettings(data_dir=str(seeded.data_dir), **limits)


@pytest.mark.parametrize(
    ("method", "build", "fragments"),
    [
        (
            "Upsert",
            lambda s: _with_docs(_upsert(NAME, s.ids[:3], s.vectors[:3]), ["a", "b" * 101, "c"]),
            ["documents[1]: document is 101 bytes, the limit is 100"],
        ),
        (
            "Upsert",
            lambda s: _upsert(NAME, s.ids[:2], s.vectors[:2], ["{}", json.dumps({"k": "x" * 300})]),
            ["metadata_json[1]: metadata is", "the limit is 200"],
        ),
        (
            "Upsert",
            lambda s: _with_docs(_upsert(NAME, s.ids[:3], s.vectors[:3]), ["a", "b"]),
            ["documents: expected 3 rows (one per id), got 2"],
        ),
        (
            "Update",
            lambda s: pb.UpdateRequest(collection=NAME, ids=s.ids[:2], documents=["a"]),
            ["documents: expected 2 rows"],
        ),
        (
            "Update",
            lambda s: pb.UpdateRequest(collection=NAME, ids=s.ids[:2]),
            ["update: give metadata_json and/or documents"],
        ),
        (
            "Update",
            lambda s: pb.UpdateRequest(
                collection=NAME, ids=s.ids[:2], metadata_json=["{}", json.dumps({"p": "y" * 190})]
            ),
            ["metadata_json[1] ('r1' merged): metadata is", "the limit is 200"],
        ),
        (
            "Update",
            lambda s: pb.UpdateRequest(
                collection=NAME, ids=s.ids[:1], documents=["d"], vectors={"dim": DIM}
            ),
            ["vectors: only with upsert_missing"],
        ),
        (
            "Count",
            lambda s: pb.CountRequest(collection=NAME, where_document={"contains": ""}),
            ["where_document: empty substring", "where_document.$contains"],
        ),
        (
            "Count",
            lambda s: pb.CountRequest(
                collection=NAME, where_document={"all": {"children": [{"contains": "a"}, {}]}}
            ),
            ["where_document: empty filter node at where_document.all[1]"],
        ),
        (
            "Search",
            lambda s: _search(NAME, s.vectors[:1], where_document={"any": {}}),
            ["where_document: any needs at least one child"],
        ),
    ],
    ids=[
        "document_over_limit",
        "metadata_over_configured_limit",
        "documents_count",
        "update_documents_count",
        "update_nothing",
        "update_merged_over_limit",
        "update_vectors_without_upsert_missing",
        "empty_substring",
        "empty_node",
        "empty_or",
    ],
)
def test_bad_input_is_invalid_argument_and_changes_nothing(
    seeded: Seeded, method: str, build: Any, fragments: list[str]
) -> None:
    _limited(seeded, max_document_bytes=100, max_metadata_bytes=200)
    try:
        seeded.reject(method, build(seeded), InvalidArgument, *fragments)
        get = pb.GetRequest(collection=NAME, ids=seeded.ids, include={"documents": True})
        assert list(seeded.call("Get", get).documents) == [_doc(i) for i in range(N)]
    finally:
        _limited(seeded)


def _with_docs(req: Any, docs: list[str]) -> Any:
    req.documents.extend(docs)
    return req


def test_where_document_dict_shapes_are_rejected() -> None:
    for bad, frag in [
        ({}, "expected exactly one of"),
        ({"$contains": "a", "$or": []}, "got 2 keys"),
        ({"$contains": 3}, "expected a string"),
        ({"$and": []}, "$and needs a non-empty list"),
        ({"$regex": "a"}, "unknown operator '$regex'"),
        (
            {"$or": [{"$contains": ""}]},
            "(it would match every document) at where_document.$or[0].$contains",
        ),
    ]:
        with pytest.raises(InvalidArgument) as info:
            parse_where_document(bad)
        assert frag in info.value.message, (bad, info.value.message)


@pytest.mark.parametrize(
    ("message", "raw", "expected"),
    [
        (pb.UpsertRequest, len_field(5, b"ok") + len_field(5, b"\xff\xfe"), "documents[1]"),
        (pb.UpdateRequest, len_field(5, b"\xc3\x28"), "documents[0]"),
        (
            pb.CountRequest,
            len_field(3, len_field(3, len_field(1, len_field(1, b"\xed\xa0\x80")))),
            "where_document.all.children[0].contains",
        ),
    ],
    ids=["upsert_documents", "update_documents", "where_document"],
)
def test_invalid_utf8_in_new_fields_names_the_field(
    message: Any, raw: bytes, expected: str
) -> None:
    with pytest.raises(Exception):  # noqa: B017 - protobuf itself refuses these bytes
        message.FromString(raw)
    problem = describe_problem(message.DESCRIPTOR, raw)
    assert problem is not None and problem.startswith(f"{expected}: not valid UTF-8"), problem


def test_old_store_gains_the_document_column(tmp_path: Path) -> None:
    settings = IndexSettings(dim=4)
    engine = ShardEngine(tmp_path, settings)
    inproc.write(engine, 1, ["a"], np.ones((1, 4), np.float32), [{"x": 1}])
    engine.close()
    conn = sqlite3.connect(tmp_path / "store.sqlite")
    # the previous version's schema: no full-text index (shard/bm25.py), no document column
    for trigger in ("rows_fts_insert", "rows_fts_delete", "rows_fts_update"):
        conn.execute(f"DROP TRIGGER {trigger}")
    for table in ("docs_fts_inst", "docs_fts_row", "docs_fts"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("DELETE FROM kv WHERE key = 'fts'")
    conn.execute("ALTER TABLE rows DROP COLUMN document")
    conn.commit()
    conn.close()
    for _ in range(2):  # migrating twice is harmless
        engine = ShardEngine(tmp_path, settings)
        assert engine.get(["a"], include_documents=True)[0].metadata == {"x": 1}  # type: ignore[union-attr]
        engine.close()
    engine = ShardEngine(tmp_path, settings)
    inproc.update(engine, 2, ["a"], None, ["now a text"])
    assert engine.count(where_document=DocCond("contains", "a text")) == 1
    engine.close()
    store = Store(tmp_path, settings)
    assert store.get_rows(["a"], documents=True)["a"].document == "now a text"
    store.close()


def test_update_is_a_change_that_catch_up_copies_and_survives_reopen(tmp_path: Path) -> None:
    settings = IndexSettings(dim=4)
    a = ShardEngine(tmp_path / "a", settings)
    b = ShardEngine(tmp_path / "b", settings)
    vecs = np.eye(4, dtype=np.float32)
    docs = ["one", None, "three", None]
    inproc.write(a, 1, list("wxyz"), vecs, [{"n": i} for i in range(4)], docs)
    b.apply_changes(*a.changes_since(0))
    got = inproc.update(a, 2, ["w", "x", "q"], [{"m": True}, None, {"m": 1}], [None, "two", "q"])
    assert (got.updated, got.missing_ids, got.inserted) == (2, ["q"], 0)
    changes, seq = a.changes_since(1)
    assert {c.id for c in changes} == {"w", "x"} and seq == 2
    b.apply_changes(changes, seq)
    a.close()
    for engine in (ShardEngine(tmp_path / "a", settings), b):
        rows = engine.get(["w", "x"], include_documents=True)
        assert [(r.metadata, r.document) for r in rows if r] == [
            ({"n": 0, "m": True}, "one"),
            ({"n": 1}, "two"),
        ]
        assert engine.count(where_document=DocCond("contains", "tw")) == 1
        assert engine.count(where_document=DocCond("not_contains", "t")) == 2  # y (none), z
        res = engine.search(vecs[1:2], 1, include_documents=True)
        assert res.documents is not None and res.documents[0, 0] == "two"
        engine.close()


def test_engine_update_of_missing_id_with_upsert_missing_needs_vectors(tmp_path: Path) -> None:
    engine = ShardEngine(tmp_path, IndexSettings(dim=4))
    inproc.write(engine, 1, ["a"], np.ones((1, 4), np.float32))
    with pytest.raises(ShardvecError, match=r"ids\[1\]: 'b' is not in the collection"):
        inproc.update(engine, 2, ["a", "b"], None, ["x", "y"], upsert_missing=True)
    assert engine.applied_seq == 1 and engine.get(["a"], include_documents=True)[0].document is None  # type: ignore[union-attr]
    engine.close()


def test_both_scan_paths_agree_with_python_substring_tests() -> None:
    from shardvec.shard.documents import Documents, document_mask
    from shardvec.shard.rowdata import RowData

    rng = np.random.default_rng(3)
    alphabet = list("ab \x00c")
    docs = ["".join(rng.choice(alphabet, size=int(rng.integers(0, 12)))) for _ in range(500)]
    rows = RowData(2, "dot")
    rows.set_documents(np.arange(500), docs)
    for needle in ["a", "ab", "b a", "\x00c", "cc", "zz"]:
        for f in (DocCond("contains", needle), DocCond("not_contains", needle)):
            want = np.array([_expect(f, d) for d in docs])
            for cand in (np.arange(500), np.arange(0, 500, 25)):  # joined pass, per row
                got = document_mask(f, Documents(rows, 500), cand, 500)
                expect = np.zeros(500, dtype=bool)
                expect[cand] = want[cand]
                np.testing.assert_array_equal(got, expect, err_msg=repr((needle, f.op)))
