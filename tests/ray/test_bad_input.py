"""Bad input through the real public gRPC server: every case gets its precise status code, a
message naming the field and row, the server keeps answering, and nothing changes.

Requests the Python client would refuse to build go through raw stubs (and, for bytes that
are not valid protobuf or UTF-8, through a channel that sends bytes as they are).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from shardvec.contract.limits import TOKEN_HEADER
from shardvec.contract.settings import IndexSettings
from shardvec.v1 import common_pb2, shard_pb2, shard_pb2_grpc
from shardvec.v1 import vector_search_pb2 as pb
from shardvec.v1 import vector_search_pb2_grpc as pb_grpc

from cluster.bringup import ShardvecCluster
from cluster.client import Client
from coordinator.paths import collection_dir, replica_dir
from shard.engine import ShardEngine
from tests.wire_bytes import len_field

pytestmark = pytest.mark.ray

DIM = 8
N_ROWS = 300
Code = grpc.StatusCode


def _packed(vectors: Any) -> bytes:
    return np.ascontiguousarray(vectors, dtype="<f4").tobytes()


def _upsert(
    name: str, ids: list[str], vectors: Any, metas: list[str] | None = None, dim: int = DIM
) -> Any:
    req = pb.UpsertRequest(collection=name, ids=ids, metadata_json=metas or [])
    req.vectors.dim = dim
    req.vectors.packed = _packed(vectors)
    return req


def _search(name: str, queries: Any, k: int = 5, dim: int = DIM, **kw: Any) -> Any:
    req = pb.SearchRequest(collection=name, k=k, **kw)
    req.queries.dim = dim
    req.queries.packed = _packed(queries)
    return req


def _cond(field: str, op: int, value_json: str) -> common_pb2.Filter:
    f = common_pb2.Filter()
    f.condition.field, f.condition.op, f.condition.value_json = field, op, value_json
    return f


def _nested_not(levels: int) -> common_pb2.Filter:
    f = _cond("i", common_pb2.Condition.EQ, "1")
    for _ in range(levels):
        outer = common_pb2.Filter()
        outer.negate.CopyFrom(f)
        f = outer
    return f


def _with_field(message: bytes, number: int, payload: bytes) -> bytes:
    """`message` with a length-delimited field appended as raw bytes (a repeated field gets
    one more entry; a message field is merged). Builds what protobuf itself would refuse to."""
    return message + len_field(number, payload)


def _append_raw_id(message: bytes, raw: bytes) -> bytes:
    """`message` with one more `ids` entry (field 2) holding raw bytes."""
    return _with_field(message, 2, raw)


@dataclass
class Seeded:
    """A 3-shard collection with known rows, and the checks every rejection ends with."""

    stub: Any
    channel: grpc.Channel
    name: str
    ids: list[str]
    vectors: np.ndarray
    metas: list[str]

    def state(self) -> tuple[int, list[int], list[str], list[str], bytes]:
        count = self.stub.Count(pb.CountRequest(collection=self.name), timeout=30).count
        info = self.stub.DescribeCollection(
            pb.DescribeCollectionRequest(name=self.name), timeout=30
        )
        per_replica = [r.count for r in info.replica_states]
        get = pb.GetRequest(collection=self.name, ids=self.ids)
        get.include.metadata = get.include.vectors = True
        got = self.stub.Get(get, timeout=30)
        return count, per_replica, list(got.ids), list(got.metadata_json), got.vectors.packed

    def assert_unchanged(self) -> None:
        """The server still answers, and count, shard counts, rows and vectors are as seeded."""
        count, per_replica, ids, metas, packed = self.state()
        assert count == N_ROWS
        assert sum(per_replica) == N_ROWS
        assert ids == self.ids
        assert [json.loads(m) for m in metas] == [json.loads(m) for m in self.metas]
        np.testing.assert_array_equal(
            np.frombuffer(packed, dtype="<f4").reshape(-1, DIM), self.vectors
        )

    def reject(self, call: Callable[[], Any], code: grpc.StatusCode, *fragments: str) -> str:
        """Run `call`, expect `code` with every fragment in the message, then check nothing
        changed. Returns the message."""
        with pytest.raises(grpc.RpcError) as info:
            call()
        err = info.value
        assert err.code() == code, (err.code(), err.details())
        details = err.details() or ""
        for fragment in fragments:
            assert fragment in details, (fragment, details)
        self.assert_unchanged()
        return details

    def raw(self, method: str) -> Any:
        """A unary call on the public service that sends bytes as they are."""
        return self.channel.unary_unary(
            f"/shardvec.v1.VectorSearch/{method}",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )


@pytest.fixture(scope="module")
def seeded(cluster: ShardvecCluster) -> Iterator[Seeded]:
    rng = np.random.default_rng(41)
    name = "bad_input_main"
    vectors = rng.standard_normal((N_ROWS, DIM)).astype(np.float32)
    ids = [f"row-{i}" for i in range(N_ROWS)]
    metas = [
        json.dumps({"i": i, "tag": "even" if i % 2 == 0 else "odd", "tags": ["a", f"t{i % 3}"]})
        for i in range(N_ROWS)
    ]
    with grpc.insecure_channel(cluster.address) as channel:
        stub = pb_grpc.VectorSearchStub(channel)
        stub.CreateCollection(
            pb.CreateCollectionRequest(
                name=name, dimension=DIM, metric=common_pb2.COSINE, shards=3
            ),
            timeout=120,
        )
        stub.Upsert(_upsert(name, ids, vectors, metas), timeout=60)
        s = Seeded(stub, channel, name, ids, vectors, metas)
        s.assert_unchanged()
        yield s


# --------------------------------------------------------------------------- vectors


def test_wrong_dimension(seeded: Seeded) -> None:
    s, name = seeded, seeded.name
    good = np.ones((2, DIM))
    s.reject(lambda: s.stub.Upsert(_upsert(name, ["n1", "n2"], np.ones((2, 9)), dim=9)),
             Code.INVALID_ARGUMENT, "vectors", "expected dimension 8, got 9")
    # dim left unset: the packed size must still be whole rows of the collection's dimension
    s.reject(lambda: s.stub.Upsert(_upsert(name, ["n1"], np.ones((1, 9)), dim=0)),
             Code.INVALID_ARGUMENT, "vectors", "36 bytes", "4 * dim = 32")
    s.reject(lambda: s.stub.Upsert(_upsert(name, ["n1", "n2", "n3"], good)),
             Code.INVALID_ARGUMENT, "vectors", "2 rows for 3 ids")
    s.reject(lambda: s.stub.Search(_search(name, np.ones((1, 4)), dim=4)),
             Code.INVALID_ARGUMENT, "queries", "expected dimension 8, got 4")
    req = pb.UpsertRequest(collection=name, ids=["n1"])
    req.vectors.dim = DIM
    req.vectors.values.extend([1.0] * 7)
    s.reject(lambda: s.stub.Upsert(req), Code.INVALID_ARGUMENT,
             "vectors", "7 values is not a multiple of dimension 8")
    both = _upsert(name, ["n1"], np.ones((1, DIM)))
    both.vectors.values.extend([1.0] * DIM)
    s.reject(lambda: s.stub.Upsert(both), Code.INVALID_ARGUMENT,
             "vectors", "either packed or values")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_infinite_values_name_the_row(seeded: Seeded, bad: float) -> None:
    s, name = seeded, seeded.name
    vecs = np.ones((5, DIM))
    vecs[3, 2] = bad
    s.reject(lambda: s.stub.Upsert(_upsert(name, [f"n{i}" for i in range(5)], vecs)),
             Code.INVALID_ARGUMENT, "vectors[3]", "NaN or infinity")
    s.reject(lambda: s.stub.Search(_search(name, vecs)),
             Code.INVALID_ARGUMENT, "queries[3]", "NaN or infinity")
    req = pb.UpsertRequest(collection=name, ids=[f"n{i}" for i in range(5)])
    req.vectors.dim = DIM
    req.vectors.values.extend(vecs.ravel().tolist())  # the repeated-float form
    s.reject(lambda: s.stub.Upsert(req), Code.INVALID_ARGUMENT, "vectors[3]")


def test_zero_vector_under_cosine(seeded: Seeded) -> None:
    s, name = seeded, seeded.name
    vecs = np.ones((3, DIM))
    vecs[1] = 0.0
    s.reject(lambda: s.stub.Upsert(_upsert(name, ["z0", "z1", "z2"], vecs)),
             Code.INVALID_ARGUMENT, "vectors[1]", "zero vector")
    s.reject(lambda: s.stub.Search(_search(name, vecs)),
             Code.INVALID_ARGUMENT, "queries[1]", "zero vector")


def test_random_bytes_that_are_not_whole_floats(seeded: Seeded) -> None:
    s, name = seeded, seeded.name
    req = pb.SearchRequest(collection=name, k=3)
    req.queries.dim = DIM
    req.queries.packed = b"\x00\x01\x02"
    s.reject(lambda: s.stub.Search(req), Code.INVALID_ARGUMENT,
             "queries", "3 bytes", "not a positive multiple")
    # NaN bit patterns inside otherwise well-sized bytes
    req.queries.packed = b"\xff" * (4 * DIM)
    s.reject(lambda: s.stub.Search(req), Code.INVALID_ARGUMENT, "queries[0]", "NaN")


def test_empty_batches(seeded: Seeded) -> None:
    s, name = seeded, seeded.name
    s.reject(lambda: s.stub.Upsert(_upsert(name, [], np.zeros((0, DIM)))),
             Code.INVALID_ARGUMENT, "ids", "batch is empty")
    s.reject(lambda: s.stub.Search(_search(name, np.zeros((0, DIM)))),
             Code.INVALID_ARGUMENT, "queries", "batch is empty")
    s.reject(lambda: s.stub.Get(pb.GetRequest(collection=name)),
             Code.INVALID_ARGUMENT, "ids", "batch is empty")
    s.reject(lambda: s.stub.Delete(pb.DeleteRequest(collection=name)),
             Code.INVALID_ARGUMENT, "exactly one of ids and filter")
    empty_filter = pb.DeleteRequest(collection=name)
    empty_filter.filter.SetInParent()
    s.reject(lambda: s.stub.Delete(empty_filter), Code.INVALID_ARGUMENT, "filter", "empty")


# ------------------------------------------------------------------------------- ids


def test_bad_ids_name_the_row(seeded: Seeded) -> None:
    s, name = seeded, seeded.name
    vecs = np.ones((3, DIM))
    cases = [
        (["ok", "", "ok2"], "ids[1]", "empty"),
        (["ok", "ok2", "x" * 513], "ids[2]", "513 bytes, the limit is 512"),
        (["ok", "é" * 257, "ok2"], "ids[1]", "514 bytes"),
        (["ok", "a\x00b", "ok2"], "ids[1]", "NUL"),
        (["dup", "ok", "dup"], "ids[2]", "duplicate of ids[0]"),
    ]
    for ids, where, what in cases:
        s.reject(lambda ids=ids: s.stub.Upsert(_upsert(name, ids, vecs)),
                 Code.INVALID_ARGUMENT, where, what)
    s.reject(lambda: s.stub.Delete(pb.DeleteRequest(collection=name, ids=["row-1", "row-1"])),
             Code.INVALID_ARGUMENT, "ids[1]", "duplicate")
    s.reject(lambda: s.stub.Get(pb.GetRequest(collection=name, ids=["row-1", ""])),
             Code.INVALID_ARGUMENT, "ids[1]", "empty")


def test_ids_that_are_not_utf8(seeded: Seeded) -> None:
    """Bytes that are not UTF-8 in a string field: the Python client cannot even send them."""
    s, name = seeded, seeded.name
    upsert = _upsert(name, ["a", "b"], np.ones((3, DIM))).SerializeToString()
    s.reject(lambda: s.raw("Upsert")(_append_raw_id(upsert, b"\xff\xfe"), timeout=30),
             Code.INVALID_ARGUMENT, "ids[2]", "not valid UTF-8")
    lone_surrogate = "\ud800".encode("utf-8", "surrogatepass")
    get = pb.GetRequest(collection=name, ids=["row-1"]).SerializeToString()
    s.reject(lambda: s.raw("Get")(_append_raw_id(get, lone_surrogate), timeout=30),
             Code.INVALID_ARGUMENT, "ids[1]", "not valid UTF-8")
    s.reject(lambda: s.raw("Count")(b"\xff\xff\xff\xff", timeout=30),
             Code.INVALID_ARGUMENT, "CountRequest", "corrupt")


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
    s.reject(lambda: s.stub.Upsert(_upsert(name, ["m0", "m1", "m2"], np.ones((3, DIM)), metas)),
             Code.INVALID_ARGUMENT, "metadata_json[2]", fragment)


def test_metadata_rows_must_match_ids(seeded: Seeded) -> None:
    s, name = seeded, seeded.name
    req = _upsert(name, ["m0", "m1"], np.ones((2, DIM)), ['{"a": 1}'])
    s.reject(lambda: s.stub.Upsert(req), Code.INVALID_ARGUMENT,
             "metadata_json", "expected 2 rows (one per id), got 1")


# ------------------------------------------------------------------- search settings


def test_k_ef_and_thresholds(seeded: Seeded) -> None:
    s, name = seeded, seeded.name
    q = np.ones((1, DIM))
    s.reject(lambda: s.stub.Search(_search(name, q, k=0)), Code.INVALID_ARGUMENT,
             "k must be in [1, 1024], got 0")
    s.reject(lambda: s.stub.Search(_search(name, q, k=1025)), Code.INVALID_ARGUMENT,
             "k must be in [1, 1024], got 1025")
    s.reject(lambda: s.stub.Search(_search(name, q, k=10, ef=5)), Code.INVALID_ARGUMENT,
             "ef must be 0 or in [k=10, 4096], got 5")
    s.reject(lambda: s.stub.Search(_search(name, q, k=10, ef=5000)), Code.INVALID_ARGUMENT,
             "ef must be 0 or in [k=10, 4096], got 5000")
    s.reject(lambda: s.stub.Search(_search(name, q, min_score=float("nan"))),
             Code.INVALID_ARGUMENT, "min_score")
    s.reject(lambda: s.stub.Search(_search(name, q, max_distance=1.0)),
             Code.INVALID_ARGUMENT, "max_distance", "euclidean")


def test_create_collection_bad_settings(seeded: Seeded, cluster: ShardvecCluster) -> None:
    s = seeded

    def create(**kw: Any) -> Callable[[], Any]:
        fields = {"name": "bad_settings", "dimension": 4, **kw}
        return lambda: s.stub.CreateCollection(pb.CreateCollectionRequest(**fields), timeout=60)

    s.reject(create(metric=77), Code.INVALID_ARGUMENT, "metric", "unknown metric 77")
    s.reject(create(dimension=0), Code.INVALID_ARGUMENT, "dimension", "got 0")
    s.reject(create(dimension=70_000), Code.INVALID_ARGUMENT, "dimension", "got 70000")
    s.reject(create(shards=1000), Code.INVALID_ARGUMENT, "shards must be in [1, 256]")
    s.reject(create(replicas=50), Code.INVALID_ARGUMENT, "replicas must be in [1, 8]")
    s.reject(create(index=common_pb2.IndexParams(m=1000)), Code.INVALID_ARGUMENT, "m must be")
    listed = s.stub.ListCollections(pb.ListCollectionsRequest(), timeout=30)
    assert "bad_settings" not in {c.name for c in listed.collections}
    assert not (Path(cluster.settings["data_dir"]) / "collections" / "bad_settings").exists()


# --------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        (lambda: _cond("tags", common_pb2.Condition.GT, '["a", "b"]'),
         ("$gt needs a number", "tags", "list")),
        (lambda: _cond("i", common_pb2.Condition.GTE, '"7"'), ("$gte needs a number", "i")),
        (lambda: _cond("i", 99, "1"), ("unknown operator 99", "i")),
        (lambda: _cond("i", common_pb2.Condition.OP_UNSPECIFIED, "1"), ("unknown operator 0",)),
        (lambda: _cond("i", common_pb2.Condition.EQ, "{bad"), ("not valid JSON", "i")),
        (lambda: _cond("i", common_pb2.Condition.EQ, "NaN"), ("not valid JSON", "i")),
        (lambda: _cond("i", common_pb2.Condition.EQ, '{"a": 1}'), ("$eq needs a scalar", "i")),
        (lambda: _cond("i", common_pb2.Condition.IN, '"a"'), ("$in needs a non-empty list",)),
        (lambda: _cond("i", common_pb2.Condition.IN, "[]"), ("$in needs a non-empty list",)),
        (lambda: _cond("i", common_pb2.Condition.EXISTS, "1"), ("$exists needs true or false",)),
        (lambda: _cond("", common_pb2.Condition.EQ, "1"), ("field name is empty",)),
        (lambda: _cond("$i", common_pb2.Condition.EQ, "1"), ("must not start with '$'",)),
        (lambda: _cond("i", common_pb2.Condition.EQ, "[" * 5000 + "]" * 5000),
         ("nested too deeply",)),
        (lambda: common_pb2.Filter(all=common_pb2.FilterList()), ("needs at least one child",)),
        (lambda: common_pb2.Filter(all=common_pb2.FilterList(children=[common_pb2.Filter()])),
         ("empty filter node", "filter.all[0]")),
        (lambda: _nested_not(40), ("nested deeper than 32",)),
        (lambda: _nested_not(150), ("filter.negate", "nested deeper than 100 levels")),
    ],
)
def test_bad_filters(
    seeded: Seeded, make: Callable[[], common_pb2.Filter], fragments: tuple[str, ...]
) -> None:
    s, name = seeded, seeded.name
    f = make().SerializeToString()  # sent as bytes: protobuf will not nest 150 levels itself
    requests = [
        ("Count", _with_field(pb.CountRequest(collection=name).SerializeToString(), 2, f)),
        ("Search", _with_field(_search(name, np.ones((1, DIM))).SerializeToString(), 4, f)),
        ("Delete", _with_field(pb.DeleteRequest(collection=name).SerializeToString(), 3, f)),
    ]
    for method, raw in requests:
        s.reject(lambda method=method, raw=raw: s.raw(method)(raw, timeout=30),
                 Code.INVALID_ARGUMENT, *fragments)


# ----------------------------------------------------------------------- collections


@pytest.mark.parametrize("bad", ["../x", "..", "a/b", "", "x" * 65, "a b", "é", "a\x00"])
def test_collection_names_outside_the_pattern(
    seeded: Seeded, cluster: ShardvecCluster, bad: str
) -> None:
    s = seeded
    pattern = "[A-Za-z0-9_-]{1,64}"
    s.reject(lambda: s.stub.CreateCollection(
        pb.CreateCollectionRequest(name=bad, dimension=4), timeout=60),
        Code.INVALID_ARGUMENT, "collection name", pattern)
    calls: list[Callable[[], Any]] = [
        lambda: s.stub.Upsert(_upsert(bad, ["a"], np.ones((1, DIM)))),
        lambda: s.stub.Search(_search(bad, np.ones((1, DIM)))),
        lambda: s.stub.Get(pb.GetRequest(collection=bad, ids=["a"])),
        lambda: s.stub.Count(pb.CountRequest(collection=bad)),
        lambda: s.stub.Delete(pb.DeleteRequest(collection=bad, ids=["a"])),
        lambda: s.stub.DescribeCollection(pb.DescribeCollectionRequest(name=bad)),
        lambda: s.stub.DropCollection(pb.DropCollectionRequest(name=bad)),
    ]
    for call in calls:
        s.reject(call, Code.INVALID_ARGUMENT, "collection name", pattern)
    data = Path(cluster.settings["data_dir"])
    assert not (data.parent / "x").exists() and not (data / "x").exists()
    assert all(
        re.fullmatch(pattern, entry.name) for entry in (data / "collections").iterdir()
    )


def test_unknown_collection_is_not_found(seeded: Seeded) -> None:
    s = seeded
    calls: list[Callable[[], Any]] = [
        lambda: s.stub.Upsert(_upsert("no_such", ["a"], np.ones((1, DIM)))),
        lambda: s.stub.Search(_search("no_such", np.ones((1, DIM)))),
        lambda: s.stub.Get(pb.GetRequest(collection="no_such", ids=["a"])),
        lambda: s.stub.Count(pb.CountRequest(collection="no_such")),
        lambda: s.stub.Delete(pb.DeleteRequest(collection="no_such", ids=["a"])),
        lambda: s.stub.DescribeCollection(pb.DescribeCollectionRequest(name="no_such")),
        lambda: s.stub.DropCollection(pb.DropCollectionRequest(name="no_such")),
    ]
    for call in calls:
        s.reject(call, Code.NOT_FOUND, "'no_such'", "does not exist")


def test_creating_an_existing_collection(seeded: Seeded) -> None:
    s = seeded
    req = pb.CreateCollectionRequest(name=s.name, dimension=16, metric=common_pb2.DOT)
    s.reject(lambda: s.stub.CreateCollection(req, timeout=60), Code.ALREADY_EXISTS,
             repr(s.name), "already exists")
    info = s.stub.DescribeCollection(pb.DescribeCollectionRequest(name=s.name))
    assert info.dimension == DIM and info.metric == common_pb2.COSINE and info.shards == 3


# ------------------------------------------------------------------ atomic rejection


SPOILED_ROW_999 = [
    ("nan", ("vectors[999]", "NaN")),
    ("zero", ("vectors[999]", "zero vector")),
    ("dup", ("ids[999]", "duplicate of ids[0]")),
    ("empty_id", ("ids[999]", "empty")),
    ("long_id", ("ids[999]", "the limit is 512")),
    ("meta", ("metadata_json[999]", "nested objects")),
]


def test_one_bad_row_rejects_the_whole_batch(
    client: Client, cluster: ShardvecCluster, name: str
) -> None:
    """Row 999 of a 1000-row batch over 4 shards is bad: no shard gets anything, and rows
    that existed before keep their vectors and metadata."""
    rng = np.random.default_rng(7)
    col = client.create_collection(name, dim=DIM, metric="cosine", shards=4)
    old = rng.standard_normal((500, DIM)).astype(np.float32)
    col.upsert([f"r{i}" for i in range(500)], old, [{"old": i} for i in range(500)])
    before = [r["count"] for r in client.describe(name)["replica_states"]]
    assert len(before) == 4 and all(c > 0 for c in before) and sum(before) == 500
    with grpc.insecure_channel(cluster.address) as channel:
        stub = pb_grpc.VectorSearchStub(channel)
        for spoil, fragments in SPOILED_ROW_999:
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
            with pytest.raises(grpc.RpcError) as info:
                stub.Upsert(_upsert(name, ids, vecs, metas), timeout=60)
            assert info.value.code() == Code.INVALID_ARGUMENT, spoil
            for fragment in fragments:
                assert fragment in (info.value.details() or ""), (spoil, info.value.details())
            assert [r["count"] for r in client.describe(name)["replica_states"]] == before
            assert col.count() == 500
            assert col.get([f"r{i}" for i in range(500, 1000)]) == []
            got = col.get([f"r{i}" for i in range(500)])
            np.testing.assert_array_equal(np.stack([r.vector for r in got]), old)
            assert [r.metadata for r in got] == [{"old": i} for i in range(500)]
    client.drop_collection(name)


# ------------------------------------------------------------------------------ limits


def test_message_size_limit(seeded: Seeded) -> None:
    s = seeded
    too_big = 70 * 1024 * 1024 // (4 * DIM)  # rows: ~70 MiB, over the 64 MiB default
    req = pb.UpsertRequest(collection=s.name, ids=["big"])
    req.vectors.dim = DIM
    req.vectors.packed = bytes(too_big * 4 * DIM)
    s.reject(lambda: s.stub.Upsert(req, timeout=60), Code.RESOURCE_EXHAUSTED,
             "larger than max")


def test_batch_and_query_batch_limits(seeded: Seeded) -> None:
    s, name = seeded, seeded.name
    n = 10_001  # the default max_upsert_rows and max_query_rows are 10,000
    ids = [f"lim-{i}" for i in range(n)]
    s.reject(lambda: s.stub.Upsert(_upsert(name, ids, np.ones((n, DIM))), timeout=60),
             Code.RESOURCE_EXHAUSTED, "upsert: 10001 rows, the limit is 10000")
    s.reject(lambda: s.stub.Delete(pb.DeleteRequest(collection=name, ids=ids), timeout=60),
             Code.RESOURCE_EXHAUSTED, "delete: 10001 rows")
    s.reject(lambda: s.stub.Get(pb.GetRequest(collection=name, ids=ids), timeout=60),
             Code.RESOURCE_EXHAUSTED, "get: 10001 rows")
    s.reject(lambda: s.stub.Search(_search(name, np.ones((n, DIM))), timeout=60),
             Code.RESOURCE_EXHAUSTED, "search queries: 10001 rows, the limit is 10000")
    s.reject(lambda: s.stub.Search(_search(name, np.ones((2000, DIM)), k=1000), timeout=60),
             Code.RESOURCE_EXHAUSTED, "2000 queries x k=1000", "max_search_hits")


# --------------------------------------------------------------------------- deadlines


def _abandoned(cluster: ShardvecCluster, address: str) -> int:
    """Calls the replica at `address` stopped because their caller had gone."""
    with grpc.insecure_channel(address) as channel:
        info = shard_pb2_grpc.ShardStub(channel).Info(
            shard_pb2.ShardInfoRequest(),
            metadata=((TOKEN_HEADER, cluster.settings["token"]),),
            timeout=30,
        )
    return int(json.loads(info.info_json)["abandoned_calls"])


def test_deadline_on_a_big_exact_search(
    client: Client, cluster: ShardvecCluster, name: str
) -> None:
    """A short client deadline gives DEADLINE_EXCEEDED; the coordinator passes what is left
    of it to the shard, which stops the search between chunks; the server keeps answering."""
    rng = np.random.default_rng(11)
    dim = 256
    col = client.create_collection(name, dim=dim, metric="euclidean", m=4, ef_construction=8)
    base = rng.standard_normal((8000, dim)).astype(np.float32)
    col.upsert([str(i) for i in range(8000)], base, batch_size=2000)
    queries = rng.standard_normal((4000, dim)).astype(np.float32)  # 8 chunks of 512 queries
    address = client.describe(name)["replica_states"][0]["address"]
    before = _abandoned(cluster, address)
    start = time.perf_counter()
    with grpc.insecure_channel(cluster.address) as channel:
        stub = pb_grpc.VectorSearchStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Search(_search(name, queries, k=10, dim=dim, exact=True), timeout=0.3)
    assert info.value.code() == Code.DEADLINE_EXCEEDED
    assert time.perf_counter() - start < 2.0
    # the shard notices its caller is gone and stops: the abandoned count goes up
    until = time.monotonic() + 30
    while _abandoned(cluster, address) == before:
        assert time.monotonic() < until, "the shard kept working for a caller that had gone"
        time.sleep(0.1)
    # and the server keeps answering, with the right results
    assert col.count() == 8000
    ids, _ = col.search_ids(base[:3], k=1, exact=True)
    assert [row[0] for row in ids] == ["0", "1", "2"]
    client.drop_collection(name)


def test_short_write_deadlines_never_half_apply_a_batch(client: Client, name: str) -> None:
    """Upserts spanning 4 shards with deadlines too short to finish: each batch ends up whole
    or absent, never on some shards only."""
    rng = np.random.default_rng(12)
    col = client.create_collection(name, dim=DIM, metric="cosine", shards=4)
    batches = {t: [f"b{t}-{i}" for i in range(2000)] for t in range(6)}
    timeouts = [0.001, 0.005, 0.01, 0.02, 0.05, 0.1]
    outcomes = []
    with grpc.insecure_channel(client.address) as channel:
        stub = pb_grpc.VectorSearchStub(channel)
        for t, timeout in enumerate(timeouts):
            vecs = rng.standard_normal((2000, DIM)).astype(np.float32)
            try:
                stub.Upsert(_upsert(name, batches[t], vecs), timeout=timeout)
                outcomes.append("ok")
            except grpc.RpcError as exc:
                assert exc.code() == Code.DEADLINE_EXCEEDED, exc.details()
                outcomes.append("deadline")
    # a later write to every shard queues behind whatever is still finishing
    col.upsert([f"barrier-{i}" for i in range(64)], rng.standard_normal((64, DIM)))
    for t in range(len(timeouts)):
        found = len(col.get(batches[t], include_vectors=False))
        assert found in (0, 2000), (t, timeouts[t], outcomes[t], found)
        if outcomes[t] == "ok":
            assert found == 2000
    assert col.count() == 64 + sum(
        len(col.get(b, include_vectors=False)) for b in batches.values()
    )
    client.drop_collection(name)


def test_a_leftover_directory_is_never_adopted(
    seeded: Seeded, cluster: ShardvecCluster, name: str
) -> None:
    """Shard data the registry does not know (an earlier collection of the same name) is not
    opened by a new collection: creating it fails and leaves the directory alone."""
    data = Path(cluster.settings["data_dir"])
    directory = replica_dir(data, name, 0, 0)
    old = ShardEngine(directory, IndexSettings(dim=DIM, metric="cosine"))
    old.upsert(1, ["ghost"], np.ones((1, DIM), dtype=np.float32))
    old.close()
    files = sorted(p.name for p in directory.iterdir())
    req = pb.CreateCollectionRequest(name=name, dimension=DIM, metric=common_pb2.COSINE)
    s = seeded
    s.reject(lambda: s.stub.CreateCollection(req, timeout=60), Code.FAILED_PRECONDITION,
             repr(name), str(collection_dir(data, name)), "registry does not know")
    assert sorted(p.name for p in directory.iterdir()) == files
    listed = s.stub.ListCollections(pb.ListCollectionsRequest(), timeout=30)
    assert name not in {c.name for c in listed.collections}
    shutil.rmtree(collection_dir(data, name))  # moved away: now the name is free
    s.stub.CreateCollection(req, timeout=60)
    assert s.stub.Count(pb.CountRequest(collection=name), timeout=30).count == 0
    s.stub.DropCollection(pb.DropCollectionRequest(name=name), timeout=60)
