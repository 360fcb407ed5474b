"""The public API end to end: real embedded Ray, real shard actors, real gRPC on loopback."""

from __future__ import annotations

import numpy as np
import pytest

from shardvec.cluster.client import Client
from shardvec.contract.errors import AlreadyExists, InvalidArgument, NotFound

pytestmark = pytest.mark.ray


def _brute_force(base: np.ndarray, queries: np.ndarray, metric: str, k: int) -> np.ndarray:
    if metric == "cosine":
        b = base / np.linalg.norm(base, axis=1, keepdims=True)
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        return np.argsort(-(q @ b.T), axis=1, kind="stable")[:, :k]
    if metric == "dot":
        return np.argsort(-(queries @ base.T), axis=1, kind="stable")[:, :k]
    d = ((queries[:, None, :] - base[None, :, :]) ** 2).sum(-1)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def test_crud_round_trip(client: Client, name: str) -> None:
    rng = np.random.default_rng(1)
    col = client.create_collection(name, dim=16, metric="cosine", shards=4)
    vecs = rng.standard_normal((500, 16)).astype(np.float32)
    ids = [f"doc-{i}" for i in range(500)]
    metas = [{"i": i, "tag": "even" if i % 2 == 0 else "odd", "tags": ["a", f"t{i % 3}"]}
             for i in range(500)]
    assert col.upsert(ids, vecs, metas, batch_size=128) == 500
    assert col.count() == 500
    assert col.count(where={"tag": "even"}) == 250
    assert col.count(where={"$and": [{"i": {"$gte": 100}}, {"tags": {"$contains": "t0"}}]}) == len(
        [i for i in range(100, 500) if i % 3 == 0]
    )
    got = col.get(["doc-3", "missing", "doc-7"])
    assert [r.id for r in got] == ["doc-3", "doc-7"]
    assert got[0].metadata == metas[3]
    np.testing.assert_array_equal(got[0].vector, vecs[3])
    # replace
    col.upsert(["doc-3"], vecs[4:5], [{"i": -3}])
    assert col.get(["doc-3"])[0].metadata == {"i": -3}
    assert col.count() == 500
    # search: a stored vector finds itself first
    hits = col.search(vecs[10:13], k=5)
    assert [h[0].id for h in hits] == ["doc-10", "doc-11", "doc-12"]
    assert all(abs(h[0].score - 1.0) < 1e-4 for h in hits)
    assert hits[0][0].metadata == metas[10]
    # filtered search returns only matching rows
    for row in col.search(vecs[:5], k=20, where={"tag": "odd"}):
        assert len(row) == 20
        assert all(h.metadata and h.metadata["tag"] == "odd" for h in row)
    # delete by ids and by filter
    assert col.delete(["doc-0", "doc-1", "nope"]) == 2
    assert col.count() == 498
    # doc-2 .. doc-49 remain with i < 50 (doc-3 now has i = -3)
    assert col.delete(where={"i": {"$lt": 50}}) == 48
    assert col.count(where={"i": {"$lt": 50}}) == 0
    assert col.get(["doc-2"]) == []
    # several batches in flight: an id repeated in a later batch ends with its later row
    before = col.count()
    again = [f"p{i % 120}" for i in range(300)]  # each id in two or three batches of 50
    more = rng.standard_normal((300, 16)).astype(np.float32)
    assert col.upsert(again, more, [{"at": i} for i in range(300)], batch_size=50,
                      concurrency=3) == 300  # fmt: skip
    assert col.count() == before + 120
    last = {f"p{i % 120}": i for i in range(300)}
    got = {r.id: r for r in col.get(sorted(last))}
    assert {k: r.metadata for k, r in got.items()} == {k: {"at": i} for k, i in last.items()}
    np.testing.assert_array_equal(got["p7"].vector, more[last["p7"]])
    client.drop_collection(name)
    with pytest.raises(NotFound):
        client.get_collection(name)


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_exact_search_through_four_shards_equals_numpy(client: Client, name: str,
                                                        metric: str) -> None:
    rng = np.random.default_rng(2)
    base = rng.standard_normal((2000, 24)).astype(np.float32)
    queries = rng.standard_normal((40, 24)).astype(np.float32)
    col = client.create_collection(name, dim=24, metric=metric, shards=4)
    col.upsert([str(i) for i in range(len(base))], base)
    ids, scores = col.search_ids(queries, k=10, exact=True)
    want = _brute_force(base, queries, metric, 10)
    assert [[int(i) for i in row] for row in ids] == want.tolist()
    for q in range(len(queries)):
        b = base[want[q]]
        if metric == "cosine":
            expect = (b / np.linalg.norm(b, axis=1, keepdims=True)) @ (
                queries[q] / np.linalg.norm(queries[q]))
        elif metric == "dot":
            expect = b @ queries[q]
        else:
            expect = np.linalg.norm(b - queries[q], axis=1)
        np.testing.assert_allclose(scores[q], expect, rtol=1e-4, atol=1e-4)
    # thresholds
    if metric == "euclidean":
        cut = float(np.median(scores[0]))
        near = col.search_ids(queries[:1], k=10, exact=True, max_distance=cut)[1][0]
        assert len(near) and (near <= cut + 1e-5).all()
    else:
        cut = float(np.median(scores[0]))
        top = col.search_ids(queries[:1], k=10, exact=True, min_score=cut)[1][0]
        assert len(top) and (top >= cut - 1e-5).all()
    client.drop_collection(name)


def test_large_batches_take_node_turns_and_match_small_ones(client: Client, name: str) -> None:
    """300 queries: each replica searches in its turn on the node (node_turn_rows 256) with
    every CPU of the node; the answers equal NumPy (exact) and 50-query batches (HNSW)."""
    rng = np.random.default_rng(5)
    base = rng.standard_normal((3000, 24)).astype(np.float32)
    queries = rng.standard_normal((300, 24)).astype(np.float32)
    col = client.create_collection(name, dim=24, metric="cosine", shards=4)
    col.upsert([str(i) for i in range(len(base))], base)
    ids, _ = col.search_ids(queries, k=10, exact=True)
    assert [[int(i) for i in row] for row in ids] == _brute_force(
        base, queries, "cosine", 10).tolist()
    big, big_scores = col.search_ids(queries, k=10)
    small: list[list[str]] = []
    for start in range(0, len(queries), 50):
        small.extend(col.search_ids(queries[start : start + 50], k=10)[0])
    assert big == small
    assert all(len(row) == 10 for row in big) and np.isfinite(np.stack(big_scores)).all()
    client.drop_collection(name)


def test_errors_have_precise_codes(client: Client, name: str) -> None:
    col = client.create_collection(name, dim=4, shards=2)
    with pytest.raises(AlreadyExists):
        client.create_collection(name, dim=4)
    with pytest.raises(NotFound, match="does not exist"):
        client.get_collection("no_such_collection")
    with pytest.raises(InvalidArgument, match="dimension 4"):
        col.upsert(["a"], np.ones((1, 5), np.float32))
    with pytest.raises(InvalidArgument, match="k must be"):
        col.search(np.ones(4, np.float32), k=0)
    with pytest.raises(InvalidArgument, match="collection name"):
        client.create_collection("../etc", dim=4)
    assert col.count() == 0
    client.drop_collection(name)


def test_recall_on_shared_data(client: Client, name: str, shared_data: object) -> None:
    from tests.conftest import SharedData, recall_at_k

    assert isinstance(shared_data, SharedData)
    col = client.create_collection(name, dim=384, metric="cosine", shards=4)
    n = len(shared_data.base)
    col.upsert([str(i) for i in range(n)], shared_data.base,
               [{"year": m["year"], "popular": m["popular"]} for m in shared_data.meta],
               batch_size=2000)
    assert col.count() == n
    q = shared_data.queries[:300]
    ids, _ = col.search_ids(q, k=10)
    assert recall_at_k(ids, shared_data.gt, 10) >= 0.95
    ids, _ = col.search_ids(q, k=10, where={"year": {"$gte": 2024}})
    assert recall_at_k(ids, shared_data.gt_year, 10) >= 0.95
    ids, _ = col.search_ids(q, k=10, where={"popular": True})
    assert recall_at_k(ids, shared_data.gt_popular, 10) >= 0.95
    client.drop_collection(name)
