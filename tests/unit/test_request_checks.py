"""Validation once per boundary: the engine's public methods check their arguments, their
`*_trusted` twins do not and give the same answers, and the shard service (whose caller, the
coordinator, validated at its edge) serves through the trusted ones."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

import shardvec.contract.convert as convert_mod
import shardvec.shard.engine as engine_mod
from shardvec.contract.codec import dumps_json
from shardvec.contract.convert import filter_to_proto, search_result_from_proto
from shardvec.contract.errors import InvalidArgument
from shardvec.contract.filters import Cond, Filter, parse_where
from shardvec.contract.limits import MAX_EF, MAX_K, TOKEN_HEADER
from shardvec.contract.settings import IndexSettings
from shardvec.contract.types import SearchResult
from shardvec.shard.engine import ShardEngine
from shardvec.shard.server import ShardServer
from shardvec.v1 import shard_pb2, shard_pb2_grpc

DIM = 8
N = 400
TOKEN = "t"


def _settings(metric: str = "cosine") -> IndexSettings:
    return IndexSettings(dim=DIM, metric=metric, m=16, ef_construction=100, ef=64)


def _rows(seed: int = 0) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((N, DIM)).astype(np.float32)
    ids = [f"r{i}" for i in range(N)]
    mds: list[dict[str, Any]] = [
        {"i": i, "tag": f"t{i % 3}", "rare": i % 50 == 0} if i % 7 else {} for i in range(N)
    ]
    return ids, vecs, mds


def _queries(n: int = 12, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[ShardEngine]:
    e = ShardEngine(tmp_path / "e", _settings(), build_threads=1)
    ids, vecs, mds = _rows()
    e.upsert(1, ids, vecs, mds)
    yield e
    e.close()


def _same(a: SearchResult, b: SearchResult) -> None:
    assert a.ids.tolist() == b.ids.tolist()
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.counts, b.counts)


# ------------------------------------------------------------------ public methods validate

BAD_CALLS: dict[str, Callable[[ShardEngine], object]] = {
    "upsert empty id": lambda e: e.upsert(2, [""], np.ones((1, DIM), np.float32)),
    "upsert duplicate ids": lambda e: e.upsert(2, ["a", "a"], np.ones((2, DIM), np.float32)),
    "upsert wrong dim": lambda e: e.upsert(2, ["a"], np.ones((1, DIM + 1), np.float32)),
    "upsert NaN": lambda e: e.upsert(2, ["a"], np.full((1, DIM), np.nan, np.float32)),
    "upsert zero cosine vector": lambda e: e.upsert(2, ["a"], np.zeros((1, DIM), np.float32)),
    "upsert rows != ids": lambda e: e.upsert(2, ["a", "b"], np.ones((1, DIM), np.float32)),
    "upsert nested metadata": lambda e: e.upsert(
        2, ["a"], np.ones((1, DIM), np.float32), [{"x": {"y": 1}}]
    ),
    "upsert seq 0": lambda e: e.upsert(0, ["a"], np.ones((1, DIM), np.float32)),
    "delete neither": lambda e: e.delete(2),
    "delete both": lambda e: e.delete(2, ids=["r1"], where=parse_where({"i": 1})),
    "delete empty ids": lambda e: e.delete(2, ids=[]),
    "delete bad filter": lambda e: e.delete(2, where=Cond("i", "gt", "one")),
    "get non-string ids": lambda e: e.get([1]),  # type: ignore[list-item]
    "count bad filter": lambda e: e.count(Cond("$i", "eq", 1)),
    "search k 0": lambda e: e.search(_queries(), 0),
    "search k too large": lambda e: e.search(_queries(), MAX_K + 1),
    "search ef too large": lambda e: e.search(_queries(), 5, ef=MAX_EF + 1),
    "search wrong dim": lambda e: e.search(np.ones((1, DIM + 1), np.float32), 5),
    "search zero cosine query": lambda e: e.search(np.zeros((1, DIM), np.float32), 5),
    "search bad filter": lambda e: e.search(_queries(), 5, where=Cond("i", "in", ())),
    "search wrong threshold": lambda e: e.search(_queries(), 5, max_distance=0.5),
    "search NaN threshold": lambda e: e.search(_queries(), 5, min_score=float("nan")),
}


@pytest.mark.parametrize("name", sorted(BAD_CALLS))
def test_public_methods_reject_bad_input(engine: ShardEngine, name: str) -> None:
    before = engine.info()
    with pytest.raises(InvalidArgument):
        BAD_CALLS[name](engine)
    after = engine.info()
    assert (after["count"], after["applied_seq"]) == (before["count"], before["applied_seq"])


# ------------------------------------------------------- the trusted twins answer the same

SEARCHES: list[dict[str, Any]] = [
    {},
    {"ef": 16},
    {"exact": True},
    {"min_score": 0.2},
    {"where": parse_where({"tag": "t1"})},  # about 1/3 of rows: post-filter
    {"where": parse_where({"rare": True})},  # a few rows: exact
    {"where": parse_where({"i": {"$gte": 100}}), "min_score": 0.0, "ef": 32},
    {"where": parse_where({"i": {"$lt": 0}})},  # nothing matches
]


def test_trusted_paths_match_the_public_paths(tmp_path: Path) -> None:
    ids, vecs, mds = _rows()
    public = ShardEngine(tmp_path / "public", _settings(), build_threads=1)
    trusted = ShardEngine(tmp_path / "trusted", _settings(), build_threads=1)
    try:
        assert public.upsert(1, ids, vecs, mds)
        assert trusted.upsert_trusted(1, ids, vecs, mds)
        assert not trusted.upsert_trusted(1, ids, vecs, mds)  # an applied seq is a no-op
        q = _queries()
        for params in SEARCHES:
            _same(public.search(q, 10, **params), trusted.search_trusted(q, 10, **params))
        for where in (None, parse_where({"tag": "t0"}), parse_where({"rare": True})):
            assert public.count(where) == trusted.count_trusted(where)
        pick = ["r3", "nope", "r7", "r10"]
        for inc_v, inc_m in ((True, True), (False, True), (True, False)):
            a = public.get(pick, include_vectors=inc_v, include_metadata=inc_m)
            b = trusted.get_trusted(pick, include_vectors=inc_v, include_metadata=inc_m)
            assert [r and (r.id, r.metadata) for r in a] == [r and (r.id, r.metadata) for r in b]
            for ra, rb in zip(a, b, strict=True):
                if ra is not None and rb is not None and inc_v:
                    np.testing.assert_array_equal(ra.vector, rb.vector)
        where = parse_where({"tag": "t2"})
        assert public.delete(2, where=where) == trusted.delete_trusted(2, None, where) > 0
        assert public.delete(3, ids=["r1", "r4", "zz"]) == 2
        assert trusted.delete_trusted(3, ["r1", "r4", "zz"], None) == 2
        assert trusted.delete_trusted(3, ["r5"], None) == 0  # seq 3 was applied
        for params in SEARCHES:
            _same(public.search(q, 10, **params), trusted.search_trusted(q, 10, **params))
        info_p, info_t = public.info(), trusted.info()
        for key in ("count", "applied_seq", "slots", "deleted_slots"):
            assert info_p[key] == info_t[key]
    finally:
        public.close()
        trusted.close()


# ------------------------------------------------------- the shard service over loopback


VALIDATORS = ("validate_ids", "validate_vectors", "validate_metadatas", "validate_filter")


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the shard service validated a request again")


def _search_request(q: np.ndarray, k: int, where: Filter | None = None, **kw: Any) -> Any:
    req = shard_pb2.ShardSearchRequest(k=k, **kw)
    req.queries.dim = DIM
    req.queries.packed = q.astype("<f4").tobytes()
    if where is not None:
        req.filter.CopyFrom(filter_to_proto(where))
    return req


def test_shard_service_answers_as_before_without_validating_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service's answers equal the public engine's, with every validator booby-trapped."""
    ids, vecs, mds = _rows()
    q = _queries()
    t0 = parse_where({"tag": "t0"})
    searches: list[tuple[Filter | None, dict[str, Any]]] = [
        (None, {}),
        (None, {"ef": 16, "min_score": 0.2}),
        (None, {"exact": True}),
        (parse_where({"tag": "t1"}), {}),
        (parse_where({"rare": True}), {}),
    ]
    reference = ShardEngine(tmp_path / "ref", _settings(), build_threads=1)
    try:  # the answers of the public, validating path
        reference.upsert(1, ids, vecs, mds)
        want = [reference.search(q, 10, where=w, **kw) for w, kw in searches]
        want_t0 = reference.count(t0)
        want_get = reference.get(["r1", "gone", "r8"], include_vectors=False)
        want_deleted = [reference.delete(2, where=t0), reference.delete(3, ids=["r1", "r3"])]
        want_after = [reference.search(q, 10, where=w, **kw) for w, kw in searches]
    finally:
        reference.close()

    served = ShardEngine(tmp_path / "served", _settings(), build_threads=1)
    server = ShardServer(served, token=TOKEN)
    meta = ((TOKEN_HEADER, TOKEN),)

    def search_all(stub: Any) -> list[tuple[list[Any], np.ndarray]]:
        out = []
        for w, kw in searches:
            resp = stub.Search(_search_request(q, 10, w, **kw), timeout=30, metadata=meta)
            got_ids, got_scores = search_result_from_proto(resp, len(q))
            out.append((got_ids.tolist(), got_scores))
        return out

    try:
        with grpc.insecure_channel(server.address) as channel, monkeypatch.context() as mp:
            for name in VALIDATORS:
                mp.setattr(engine_mod, name, _refuse)
            mp.setattr(convert_mod, "validate_filter", _refuse)
            stub = shard_pb2_grpc.ShardStub(channel)
            up = shard_pb2.ShardUpsertRequest(seq=1, ids=ids)
            up.vectors.dim = DIM
            up.vectors.packed = vecs.astype("<f4").tobytes()
            up.metadata_json.extend(dumps_json(m) if m else "" for m in mds)
            resp = stub.Upsert(up, timeout=30, metadata=meta)
            assert (resp.applied, resp.affected, resp.applied_seq) == (True, N, 1)
            assert stub.Upsert(up, timeout=30, metadata=meta).applied is False
            got = search_all(stub)

            count = shard_pb2.ShardCountRequest()
            count.filter.CopyFrom(filter_to_proto(t0))
            assert stub.Count(count, timeout=30, metadata=meta).count == want_t0
            assert stub.Count(shard_pb2.ShardCountRequest(), timeout=30, metadata=meta).count == N

            get = shard_pb2.ShardGetRequest(ids=["r1", "gone", "r8"])
            get.include.metadata = True
            rows = stub.Get(get, timeout=30, metadata=meta)
            assert list(rows.ids) == [r.id for r in want_get if r is not None]
            assert [json.loads(t) if t else {} for t in rows.metadata_json] == [
                r.metadata for r in want_get if r is not None
            ]

            delete = shard_pb2.ShardDeleteRequest(seq=2)
            delete.filter.CopyFrom(filter_to_proto(t0))
            resp = stub.Delete(delete, timeout=30, metadata=meta)
            assert (resp.applied, resp.affected, resp.applied_seq) == (True, want_deleted[0], 2)
            by_id = shard_pb2.ShardDeleteRequest(seq=3, ids=["r1", "r3"])
            assert stub.Delete(by_id, timeout=30, metadata=meta).affected == want_deleted[1]
            got_after = search_all(stub)

            with pytest.raises(grpc.RpcError) as err:
                stub.Count(shard_pb2.ShardCountRequest(), timeout=30)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        server.stop(0)
        served.close()
    for (got_ids, got_scores), w in zip(got + got_after, want + want_after, strict=True):
        assert got_ids == w.ids.tolist()
        np.testing.assert_array_equal(got_scores, w.scores)
