"""Bad input at the public service's edge, without Ray: every case of the Ray tier's bad-input
suite that needs no real gRPC server, run against `VectorSearchService` over a
`CoordinatorRuntime` of in-process replicas (tests/inproc.py).

Each case raises the precise shardvec error (the class the interceptor maps to the status code
the Ray tier saw: InvalidArgument -> INVALID_ARGUMENT and so on) with a message naming the
field and row, and changes nothing: the total and every shard's engine row count, the seeded
rows' ids, metadata and vectors are as before, and the service still answers a search.

What needs the real server stays in tests/ray/test_bad_input.py, one end-to-end case per
status code: bytes gRPC itself must decode (ids that are not UTF-8, a corrupt message, a filter
nested 150 levels, which protobuf will not build), the server's message size limit, and real
deadlines.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardvec.contract.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from shardvec.contract.settings import IndexSettings
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.paths import collection_dir, replica_dir
from shardvec.shard.engine import ShardEngine
from shardvec.v1 import common_pb2
from shardvec.v1 import vector_search_pb2 as pb
from tests import inproc
from tests.fakes import FakeContext
from tests.requests import condition, nested_not, search_request, upsert_request
from tests.seeded import Seeded, open_seeded

DIM = 8
N_ROWS = 300
MAIN = "bad_input_main"
NAME_PATTERN = "[A-Za-z0-9_-]{1,64}"



CTX = FakeContext()




def _upsert(
    name: str, ids: list[str], vectors: Any, metas: list[str] | None = None, dim: int = DIM
) -> Any:
    return upsert_request(name, ids, vectors, metas, dim=dim)


def _search(name: str, queries: Any, k: int = 5, dim: int = DIM, **kw: Any) -> Any:
    return search_request(name, queries, k, dim=dim, **kw)






def _main_meta(i: int) -> str:
    return json.dumps({"i": i, "tag": "even" if i % 2 == 0 else "odd", "tags": ["a", f"t{i % 3}"]})


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """A 3-shard collection of 300 known rows (as the Ray tier's `seeded`)."""
    s = open_seeded(tmp_path_factory.mktemp("bad-input"), MAIN, 3, N_ROWS, _main_meta, 41, "row-")
    s.assert_unchanged()
    yield s
    s.close()


# --------------------------------------------------------------------------- vectors


def test_wrong_dimension(seeded: Seeded) -> None:
    s, name = seeded, seeded.name
    good = np.ones((2, DIM))
    s.reject("Upsert", _upsert(name, ["n1", "n2"], np.ones((2, 9)), dim=9),
             InvalidArgument, "vectors", "expected dimension 8, got 9")
    # dim left unset: the packed size must still be whole rows of the collection's dimension
    s.reject("Upsert", _upsert(name, ["n1"], np.ones((1, 9)), dim=0),
             InvalidArgument, "vectors", "36 bytes", "4 * dim = 32")
    s.reject("Upsert", _upsert(name, ["n1", "n2", "n3"], good),
             InvalidArgument, "vectors", "2 rows for 3 ids")
    s.reject("Search", _search(name, np.ones((1, 4)), dim=4),
             InvalidArgument, "queries", "expected dimension 8, got 4")
    req = pb.UpsertRequest(collection=name, ids=["n1"])
    req.vectors.dim = DIM
    req.vectors.values.extend([1.0] * 7)
    s.reject("Upsert", req, InvalidArgument, "vectors", "7 values is not a multiple of dimension 8")
    both = _upsert(name, ["n1"], np.ones((1, DIM)))
    both.vectors.values.extend([1.0] * DIM)
    s.reject("Upsert", both, InvalidArgument, "vectors", "either packed or values")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_infinite_values_name_the_row(seeded: Seeded, bad: float) -> None:
    s, name = seeded, seeded.name
    vecs = np.ones((5, DIM))
    vecs[3, 2] = bad
    s.reject("Upsert", _upsert(name, [f"n{i}" for i in range(5)], vecs),
             InvalidArgument, "vectors[3]", "NaN or infinity")
    s.reject("Search", _search(name, vecs), InvalidArgument, "queries[3]", "NaN or infinity")
    req = pb.UpsertRequest(collection=name, ids=[f"n{i}" for i in range(5)])
    req.vectors.dim = DIM
    req.vectors.values.extend(vecs.ravel().tolist())  # the repeated-float form
    s.reject("Upsert", req, InvalidArgument, "vectors[3]")


def test_zero_vector_under_cosine(seeded: Seeded) -> None:
    s, name = seeded, seeded.name
    vecs = np.ones((3, DIM))
    vecs[1] = 0.0
    s.reject("Upsert", _upsert(name, ["z0", "z1", "z2"], vecs),
             InvalidArgument, "vectors[1]", "zero vector")
    s.reject("Search", _search(name, vecs), InvalidArgument, "queries[1]", "zero vector")


def test_random_bytes_that_are_not_whole_floats(seeded: Seeded) -> None:
    s, name = seeded, seeded.name
    req = pb.SearchRequest(collection=name, k=3)
    req.queries.dim = DIM
    req.queries.packed = b"\x00\x01\x02"
    s.reject("Search", req, InvalidArgument, "queries", "3 bytes", "not a positive multiple")
    # NaN bit patterns inside otherwise well-sized bytes
    req.queries.packed = b"\xff" * (4 * DIM)
    s.reject("Search", req, InvalidArgument, "queries[0]", "NaN")


def test_empty_batches(seeded: Seeded) -> None:
    s, name = seeded, seeded.name
    s.reject("Upsert", _upsert(name, [], np.zeros((0, DIM))),
             InvalidArgument, "ids", "batch is empty")
    s.reject("Search", _search(name, np.zeros((0, DIM))),
             InvalidArgument, "queries", "batch is empty")
    by_ids_with_limit = pb.GetRequest(collection=name, ids=["row-1"], limit=3)
    s.reject("Get", by_ids_with_limit, InvalidArgument, "limit", "Get by filter")
    s.reject("Delete", pb.DeleteRequest(collection=name),
             InvalidArgument, "exactly one of ids and filter")
    empty_filter = pb.DeleteRequest(collection=name)
    empty_filter.filter.SetInParent()
    s.reject("Delete", empty_filter, InvalidArgument, "filter", "empty")


# ------------------------------------------------------------------------------- ids


@pytest.mark.parametrize(
    ("ids", "where", "what"),
    [
        (["ok", "", "ok2"], "ids[1]", "empty"),
        (["ok", "ok2", "x" * 513], "ids[2]", "513 bytes, the limit is 512"),
        (["ok", "é" * 257, "ok2"], "ids[1]", "514 bytes"),
        (["ok", "a\x00b", "ok2"], "ids[1]", "NUL"),
        (["dup", "ok", "dup"], "ids[2]", "duplicate of ids[0]"),
    ],
    ids=["empty", "too_long", "too_long_utf8", "nul", "duplicate"],
)
def test_bad_ids_name_the_row(seeded: Seeded, ids: list[str], where: str, what: str) -> None:
    s, name = seeded, seeded.name
    s.reject("Upsert", _upsert(name, ids, np.ones((3, DIM))), InvalidArgument, where, what)


def test_bad_ids_in_delete_and_get(seeded: Seeded) -> None:
    s, name = seeded, seeded.name
    s.reject("Delete", pb.DeleteRequest(collection=name, ids=["row-1", "row-1"]),
             InvalidArgument, "ids[1]", "duplicate")
    s.reject("Get", pb.GetRequest(collection=name, ids=["row-1", ""]),
             InvalidArgument, "ids[1]", "empty")


# -------------------------------------------------------------------------- metadata


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{not json", "invalid JSON"),
        ('{"a": NaN}', "NaN is not valid JSON"),
        ('{"a": 1, "a": 2}', "duplicate key"),
        ("[1, 2]", "expected a JSON object, got array"),
        ('"text"', "expected a JSON object, got str"),
        ("null", "expected a JSON object"),
        ('{"a": {"b": 1}}', "nested objects are not supported"),
        ('{"a": [[1]]}', "nested lists are not supported"),
        ('{"a": [1, "x"]}', "all strings or all numbers"),
        ('{"a": ' + "[" * 3000 + "]" * 3000 + "}", "nested too deeply"),
        ('{"a": "' + "z" * 70_000 + '"}', "the limit is 65536"),
        ('{"$a": 1}', "must not start with '$'"),
        ('{"a": 99999999999999999999}', "does not fit in 64 bits"),
        ('{"a": "\\ud800"}', "not valid UTF-8"),
    ],
)
def test_bad_metadata_names_the_row(seeded: Seeded, text: str, fragment: str) -> None:
    s, name = seeded, seeded.name
    metas = ['{"ok": 1}', "", text]
    s.reject("Upsert", _upsert(name, ["m0", "m1", "m2"], np.ones((3, DIM)), metas),
             InvalidArgument, "metadata_json[2]", fragment)


def test_metadata_rows_must_match_ids(seeded: Seeded) -> None:
    s, name = seeded, seeded.name
    req = _upsert(name, ["m0", "m1"], np.ones((2, DIM)), ['{"a": 1}'])
    s.reject("Upsert", req, InvalidArgument, "metadata_json", "expected 2 rows (one per id), got 1")


# ------------------------------------------------------------------- search settings


def test_k_ef_and_thresholds(seeded: Seeded) -> None:
    s, name = seeded, seeded.name
    q = np.ones((1, DIM))
    s.reject("Search", _search(name, q, k=0), InvalidArgument, "k must be in [1, 1024], got 0")
    s.reject("Search", _search(name, q, k=1025),
             InvalidArgument, "k must be in [1, 1024], got 1025")
    s.reject("Search", _search(name, q, k=10, ef=5),
             InvalidArgument, "ef must be 0 or in [k=10, 4096], got 5")
    s.reject("Search", _search(name, q, k=10, ef=5000),
             InvalidArgument, "ef must be 0 or in [k=10, 4096], got 5000")
    s.reject("Search", _search(name, q, min_score=float("nan")), InvalidArgument, "min_score")
    s.reject("Search", _search(name, q, max_distance=1.0),
             InvalidArgument, "max_distance", "euclidean")


def test_create_collection_bad_settings(seeded: Seeded) -> None:
    s = seeded

    def create(**kw: Any) -> Any:
        return pb.CreateCollectionRequest(**{"name": "bad_settings", "dimension": 4, **kw})

    s.reject("CreateCollection", create(metric=77), InvalidArgument, "metric", "unknown metric 77")
    s.reject("CreateCollection", create(dimension=0), InvalidArgument, "dimension", "got 0")
    s.reject("CreateCollection", create(dimension=70_000),
             InvalidArgument, "dimension", "got 70000")
    s.reject("CreateCollection", create(shards=1000),
             InvalidArgument, "shards must be in [1, 256]")
    s.reject("CreateCollection", create(replicas=50),
             InvalidArgument, "replicas must be in [1, 8]")
    s.reject("CreateCollection", create(index=common_pb2.IndexParams(m=1000)),
             InvalidArgument, "m must be")
    listed = s.call("ListCollections", pb.ListCollectionsRequest())
    assert "bad_settings" not in {c.name for c in listed.collections}
    assert not (s.data_dir / "collections" / "bad_settings").exists()


# --------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        (lambda: condition("tags", common_pb2.Condition.GT, '["a", "b"]'),
         ("$gt needs a number", "tags", "list")),
        (lambda: condition("i", common_pb2.Condition.GTE, '"7"'), ("$gte needs a number", "i")),
        (lambda: condition("i", 99, "1"), ("unknown operator 99", "i")),
        (lambda: condition("i", common_pb2.Condition.OP_UNSPECIFIED, "1"), ("unknown operator 0",)),
        (lambda: condition("i", common_pb2.Condition.EQ, "{bad"), ("not valid JSON", "i")),
        (lambda: condition("i", common_pb2.Condition.EQ, "NaN"), ("not valid JSON", "i")),
        (lambda: condition("i", common_pb2.Condition.EQ, '{"a": 1}'), ("$eq needs a scalar", "i")),
        (lambda: condition("i", common_pb2.Condition.IN, '"a"'), ("$in needs a non-empty list",)),
        (lambda: condition("i", common_pb2.Condition.IN, "[]"), ("$in needs a non-empty list",)),
        (
            lambda: condition("i", common_pb2.Condition.EXISTS, "1"),
            ("$exists needs true or false",),
        ),
        (lambda: condition("", common_pb2.Condition.EQ, "1"), ("field name is empty",)),
        (lambda: condition("$i", common_pb2.Condition.EQ, "1"), ("must not start with '$'",)),
        (lambda: condition("i", common_pb2.Condition.EQ, "[" * 5000 + "]" * 5000),
         ("nested too deeply",)),
        (lambda: common_pb2.Filter(all=common_pb2.FilterList()), ("needs at least one child",)),
        (lambda: common_pb2.Filter(all=common_pb2.FilterList(children=[common_pb2.Filter()])),
         ("empty filter node", "filter.all[0]")),
        (lambda: nested_not(40), ("nested deeper than 32",)),
        # a filter nested 150 levels is refused by gRPC's decoding: tests/ray/test_bad_input.py
    ],
)
def test_bad_filters(
    seeded: Seeded, make: Callable[[], common_pb2.Filter], fragments: tuple[str, ...]
) -> None:
    s, name = seeded, seeded.name
    count = pb.CountRequest(collection=name)
    count.filter.CopyFrom(make())
    search = _search(name, np.ones((1, DIM)))
    search.filter.CopyFrom(make())
    delete = pb.DeleteRequest(collection=name)
    delete.filter.CopyFrom(make())
    for method, req in (("Count", count), ("Search", search), ("Delete", delete)):
        s.reject(method, req, InvalidArgument, *fragments)


# ----------------------------------------------------------------------- collections


@pytest.mark.parametrize("bad", ["../x", "..", "a/b", "", "x" * 65, "a b", "é", "a\x00"])
def test_collection_names_outside_the_pattern(seeded: Seeded, bad: str) -> None:
    s = seeded
    s.reject("CreateCollection", pb.CreateCollectionRequest(name=bad, dimension=4),
             InvalidArgument, "collection name", NAME_PATTERN)
    calls: list[tuple[str, Any]] = [
        ("Upsert", _upsert(bad, ["a"], np.ones((1, DIM)))),
        ("Search", _search(bad, np.ones((1, DIM)))),
        ("Get", pb.GetRequest(collection=bad, ids=["a"])),
        ("Count", pb.CountRequest(collection=bad)),
        ("Delete", pb.DeleteRequest(collection=bad, ids=["a"])),
        ("DescribeCollection", pb.DescribeCollectionRequest(name=bad)),
        ("DropCollection", pb.DropCollectionRequest(name=bad)),
    ]
    for method, req in calls:
        s.reject(method, req, InvalidArgument, "collection name", NAME_PATTERN)
    data = s.data_dir
    assert not (data.parent / "x").exists() and not (data / "x").exists()
    assert all(
        re.fullmatch(NAME_PATTERN, entry.name) for entry in (data / "collections").iterdir()
    )


def test_unknown_collection_is_not_found(seeded: Seeded) -> None:
    s = seeded
    calls: list[tuple[str, Any]] = [
        ("Upsert", _upsert("no_such", ["a"], np.ones((1, DIM)))),
        ("Search", _search("no_such", np.ones((1, DIM)))),
        ("Get", pb.GetRequest(collection="no_such", ids=["a"])),
        ("Count", pb.CountRequest(collection="no_such")),
        ("Delete", pb.DeleteRequest(collection="no_such", ids=["a"])),
        ("DescribeCollection", pb.DescribeCollectionRequest(name="no_such")),
        ("DropCollection", pb.DropCollectionRequest(name="no_such")),
    ]
    for method, req in calls:
        s.reject(method, req, NotFound, "'no_such'", "does not exist")


def test_creating_an_existing_collection(seeded: Seeded) -> None:
    s = seeded
    req = pb.CreateCollectionRequest(name=s.name, dimension=16, metric=common_pb2.DOT)
    s.reject("CreateCollection", req, AlreadyExists, repr(s.name), "already exists")
    info = s.call("DescribeCollection", pb.DescribeCollectionRequest(name=s.name))
    assert info.dimension == DIM and info.metric == common_pb2.COSINE and info.shards == 3


def test_a_leftover_directory_is_never_adopted(seeded: Seeded) -> None:
    """Shard data the registry does not know (an earlier collection of the same name) is not
    opened by a new collection: creating it fails and leaves the directory alone."""
    s, name = seeded, "leftover"
    directory = replica_dir(s.data_dir, name, 0, 0)
    old = ShardEngine(directory, IndexSettings(dim=DIM, metric="cosine"))
    inproc.write(old, 1, ["ghost"], np.ones((1, DIM), dtype=np.float32))
    old.close()
    files = sorted(p.name for p in directory.iterdir())
    req = pb.CreateCollectionRequest(name=name, dimension=DIM, metric=common_pb2.COSINE)
    s.reject("CreateCollection", req, FailedPrecondition,
             repr(name), str(collection_dir(s.data_dir, name)), "registry does not know")
    assert sorted(p.name for p in directory.iterdir()) == files
    listed = s.call("ListCollections", pb.ListCollectionsRequest())
    assert name not in {c.name for c in listed.collections}
    shutil.rmtree(collection_dir(s.data_dir, name))  # moved away: now the name is free
    s.call("CreateCollection", req)
    assert s.call("Count", pb.CountRequest(collection=name)).count == 0
    s.call("DropCollection", pb.DropCollectionRequest(name=name))
    s.assert_unchanged()


# ------------------------------------------------------------------------------ limits


def test_batch_and_query_batch_limits(seeded: Seeded) -> None:
    """The default max_upsert_rows, max_query_rows (10,000) and max_search_hits (10**6)."""
    s, name = seeded, seeded.name
    n = 10_001
    ids = [f"lim-{i}" for i in range(n)]
    s.reject("Upsert", _upsert(name, ids, np.ones((n, DIM))),
             ResourceExhausted, "upsert: 10001 rows, the limit is 10000")
    s.reject("Delete", pb.DeleteRequest(collection=name, ids=ids),
             ResourceExhausted, "delete: 10001 rows")
    s.reject("Get", pb.GetRequest(collection=name, ids=ids), ResourceExhausted, "get: 10001 rows")
    s.reject("Search", _search(name, np.ones((n, DIM))),
             ResourceExhausted, "search queries: 10001 rows, the limit is 10000")
    s.reject("Search", _search(name, np.ones((2000, DIM)), k=1000),
             ResourceExhausted, "2000 queries x k=1000", "max_search_hits")


# ------------------------------------------------------------------ atomic rejection


SPOILED_ROW_999 = [
    ("nan", ("vectors[999]", "NaN")),
    ("zero", ("vectors[999]", "zero vector")),
    ("dup", ("ids[999]", "duplicate of ids[0]")),
    ("empty_id", ("ids[999]", "empty")),
    ("long_id", ("ids[999]", "the limit is 512")),
    ("meta", ("metadata_json[999]", "nested objects")),
]


@pytest.mark.parametrize(
    ("spoil", "fragments"), SPOILED_ROW_999, ids=[c[0] for c in SPOILED_ROW_999]
)
def test_one_bad_row_rejects_the_whole_batch(
    tmp_path: Path, spoil: str, fragments: tuple[str, ...]
) -> None:
    """Row 999 of a 1000-row batch over 4 shards is bad: no shard's engine gets anything, and
    rows that existed before keep their vectors and metadata."""
    s = open_seeded(tmp_path, "atomic", 4, 500, lambda i: json.dumps({"old": i}), 7)
    try:
        before = s.engine_counts()
        rng = np.random.default_rng(8)
        ids = [f"r{i}" for i in range(1000)]  # rows 0..499 overwrite, 500..999 are new
        vecs = rng.standard_normal((1000, DIM)).astype(np.float32)
        metas = [json.dumps({"i": i}) for i in range(1000)]
        if spoil == "nan":
            vecs[999, 0] = np.nan
        elif spoil == "zero":
            vecs[999] = 0.0
        elif spoil == "dup":
            ids[999] = ids[0]
        elif spoil == "empty_id":
            ids[999] = ""
        elif spoil == "long_id":
            ids[999] = "x" * 600
        else:
            metas[999] = '{"nested": {"x": 1}}'
        with pytest.raises(InvalidArgument) as info:
            s.call("Upsert", _upsert(s.name, ids, vecs, metas))
        for fragment in fragments:
            assert fragment in info.value.message, (spoil, info.value.message)
        assert s.engine_counts() == before
        assert s.call("Count", pb.CountRequest(collection=s.name)).count == 500
        new = pb.GetRequest(collection=s.name, ids=[f"r{i}" for i in range(500, 1000)])
        assert list(s.call("Get", new).ids) == []
        get = pb.GetRequest(collection=s.name, ids=[f"r{i}" for i in range(500)])
        get.include.metadata = get.include.vectors = True
        got = s.call("Get", get)
        assert list(got.ids) == s.ids
        np.testing.assert_array_equal(
            np.frombuffer(got.vectors.packed, dtype="<f4").reshape(-1, DIM), s.vectors
        )
        assert [json.loads(m) for m in got.metadata_json] == [{"old": i} for i in range(500)]
    finally:
        s.close()


@pytest.mark.parametrize(
    ("field", "bad"),
    [("port", -1), ("port", 65536), ("front_port", -2), ("front_metrics_port", -2),
     ("front_metrics_port", 70000)],
)
def test_settings_refuse_ports_out_of_range(tmp_path: Path, field: str, bad: int) -> None:
    with pytest.raises(InvalidArgument, match=field):
        CoordinatorSettings(data_dir=str(tmp_path), **{field: bad})
    # -1 (off) and 0 (a free port) are both valid for the fronts' ports
    assert CoordinatorSettings(data_dir=str(tmp_path), front_metrics_port=0).front_metrics_port == 0


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_settings_refuse_an_embedder_refresh_that_is_not_positive(tmp_path: Path, bad: float
                                                                  ) -> None:  # fmt: skip
    with pytest.raises(InvalidArgument, match="embedder_refresh_s"):
        CoordinatorSettings(data_dir=str(tmp_path), embedder_refresh_s=bad)
    assert CoordinatorSettings(data_dir=str(tmp_path), embedder_refresh_s=0.5).embedder_refresh_s
