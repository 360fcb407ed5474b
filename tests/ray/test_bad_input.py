"""Bad input through the real public gRPC server, one end-to-end case per status code: the
status and message the interceptor gives, the server keeps answering, and nothing changes.

Every other bad-input case (each dimension, NaN/infinity, zero-vector, id, metadata, k/ef,
threshold, CreateCollection-setting, filter and collection-name case, unknown and existing
collections, the row limits, the leftover directory, and one bad row of 1000 over 4 shards)
runs without Ray in tests/unit/test_bad_input.py, against the service's handlers over
in-process replicas. What stays here needs the real server: bytes gRPC itself must decode
(ids that are not UTF-8, a corrupt message, a filter nested 150 levels, which protobuf will not
build), the server's message size limit, and real deadlines.

Requests the Python client would refuse to build go through a channel that sends bytes as
they are.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from shardvec.cluster.bringup import ShardvecCluster
from shardvec.cluster.client import Client
from shardvec.contract.limits import TOKEN_HEADER
from shardvec.contract.settings import IndexSettings
from shardvec.coordinator.paths import collection_dir, replica_dir
from shardvec.shard.engine import ShardEngine
from shardvec.v1 import common_pb2, shard_pb2, shard_pb2_grpc
from shardvec.v1 import vector_search_pb2 as pb
from shardvec.v1 import vector_search_pb2_grpc as pb_grpc
from tests.requests import nested_not, search_request, upsert_request
from tests.waits import holds_within
from tests.wire_bytes import len_field

pytestmark = pytest.mark.ray

DIM = 8
N_ROWS = 300
Code = grpc.StatusCode




def _upsert(
    name: str, ids: list[str], vectors: Any, metas: list[str] | None = None, dim: int = DIM
) -> Any:
    return upsert_request(name, ids, vectors, metas, dim=dim)


def _search(name: str, queries: Any, k: int = 5, dim: int = DIM, **kw: Any) -> Any:
    return search_request(name, queries, k, dim=dim, **kw)






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
    """INVALID_ARGUMENT from the service's validation (every other case: the unit tier)."""
    s, name = seeded, seeded.name
    s.reject(lambda: s.stub.Upsert(_upsert(name, ["n1", "n2"], np.ones((2, 9)), dim=9)),
             Code.INVALID_ARGUMENT, "vectors", "expected dimension 8, got 9")


def test_ids_that_are_not_utf8(seeded: Seeded) -> None:
    """Bytes that are not UTF-8 in a string field (the Python client cannot even send them) and
    a corrupt message: INVALID_ARGUMENT from the interceptor's decoding."""
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


# --------------------------------------------------------------------------- filters


def test_a_filter_nested_150_levels(seeded: Seeded) -> None:
    """Deeper than protobuf decodes: the interceptor's decoder names the path (in process, where
    nothing is decoded, the service's own depth check says "nested deeper than 32")."""
    s, name = seeded, seeded.name
    f = nested_not(150).SerializeToString()  # sent as bytes: protobuf will not parse it
    requests = [
        ("Count", _with_field(pb.CountRequest(collection=name).SerializeToString(), 2, f)),
        ("Search", _with_field(_search(name, np.ones((1, DIM))).SerializeToString(), 4, f)),
        ("Delete", _with_field(pb.DeleteRequest(collection=name).SerializeToString(), 3, f)),
    ]
    for method, raw in requests:
        s.reject(lambda method=method, raw=raw: s.raw(method)(raw, timeout=30),
                 Code.INVALID_ARGUMENT, "filter.negate", "nested deeper than 100 levels")


# ----------------------------------------------------------------------- collections


def test_unknown_collection_is_not_found(seeded: Seeded) -> None:
    s = seeded
    s.reject(lambda: s.stub.Upsert(_upsert("no_such", ["a"], np.ones((1, DIM)))),
             Code.NOT_FOUND, "'no_such'", "does not exist")


def test_creating_an_existing_collection(seeded: Seeded) -> None:
    s = seeded
    req = pb.CreateCollectionRequest(name=s.name, dimension=16, metric=common_pb2.DOT)
    s.reject(lambda: s.stub.CreateCollection(req, timeout=60), Code.ALREADY_EXISTS,
             repr(s.name), "already exists")
    info = s.stub.DescribeCollection(pb.DescribeCollectionRequest(name=s.name))
    assert info.dimension == DIM and info.metric == common_pb2.COSINE and info.shards == 3


# ------------------------------------------------------------------------------ limits


def test_message_size_limit(seeded: Seeded) -> None:
    s = seeded
    too_big = 70 * 1024 * 1024 // (4 * DIM)  # rows: ~70 MiB, over the 64 MiB default
    req = pb.UpsertRequest(collection=s.name, ids=["big"])
    req.vectors.dim = DIM
    req.vectors.packed = bytes(too_big * 4 * DIM)
    s.reject(lambda: s.stub.Upsert(req, timeout=60), Code.RESOURCE_EXHAUSTED,
             "larger than max")


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
    base = rng.standard_normal((16000, dim)).astype(np.float32)
    col.upsert([str(i) for i in range(16000)], base, batch_size=4000)
    # 16 chunks of 512 queries: about 1.5 s of work here, well past the 0.3 s deadline (at
    # 8,000 x 4,000 a quiet machine could finish before the shard noticed its caller gone)
    queries = rng.standard_normal((8000, dim)).astype(np.float32)
    address = client.describe(name)["replica_states"][0]["address"]
    before = _abandoned(cluster, address)
    # The shard notices its caller is gone and stops: the abandoned count goes up. On a loaded
    # machine the coordinator can spend the whole 0.3 s decoding the 8 MB request and never
    # send it (then no shard works for the caller either), so up to three tries; a shard that
    # never stops for a gone caller fails all three.
    for _ in range(3):
        start = time.perf_counter()
        with grpc.insecure_channel(cluster.address) as channel:
            stub = pb_grpc.VectorSearchStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                stub.Search(_search(name, queries, k=10, dim=dim, exact=True), timeout=0.3)
        assert info.value.code() == Code.DEADLINE_EXCEEDED
        assert time.perf_counter() - start < 2.0
        if holds_within(lambda: _abandoned(cluster, address) > before, timeout=10):
            break
    else:
        raise AssertionError("the shard kept working for a caller that had gone")
    # and the server keeps answering, with the right results
    assert col.count() == 16000
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


def test_documents_and_update_fields_that_are_not_utf8(seeded: Seeded) -> None:
    """The new string fields (Upsert/Update documents, where_document substrings) holding
    bytes that are not UTF-8: INVALID_ARGUMENT naming the field, as protobuf cannot parse them
    (gRPC's own deserializer would answer INTERNAL/UNKNOWN "Exception deserializing")."""
    s, name = seeded, seeded.name
    upsert = _upsert(name, ["a", "b"], np.ones((2, DIM))).SerializeToString()
    upsert = _with_field(_with_field(upsert, 5, b"fine"), 5, b"\xc3\x28")
    s.reject(lambda: s.raw("Upsert")(upsert, timeout=30),
             Code.INVALID_ARGUMENT, "documents[1]", "not valid UTF-8")
    update = pb.UpdateRequest(collection=name, ids=["row-1"]).SerializeToString()
    s.reject(lambda: s.raw("Update")(_with_field(update, 5, b"\xff"), timeout=30),
             Code.INVALID_ARGUMENT, "documents[0]", "not valid UTF-8")
    count = pb.CountRequest(collection=name).SerializeToString()
    wd = len_field(2, "\ud800".encode("utf-8", "surrogatepass"))  # not_contains
    s.reject(lambda: s.raw("Count")(_with_field(count, 3, wd), timeout=30),
             Code.INVALID_ARGUMENT, "where_document.not_contains", "not valid UTF-8")
    s.reject(lambda: s.stub.Update(pb.UpdateRequest(collection=name, ids=["row-1", "nope"],
                                                    documents=["x", "y"], upsert_missing=True)),
             Code.INVALID_ARGUMENT, "ids[1]: 'nope' is not in the collection")
