"""Validation once, where a shard request is built: the contract layer's checks
(shardvec.contract.shard_requests) refuse bad input before an engine sees it, the engine's one
method per call (it checks nothing) gives the same answers as the checked path, and the shard
service (whose caller, the coordinator, validated at its edge) serves without checking again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

import shardvec.contract.convert as convert_mod
import shardvec.contract.shard_requests as requests_mod
from shardvec.contract.buckets import NUM_BUCKETS
from shardvec.contract.codec import dumps_json
from shardvec.contract.convert import filter_to_proto
from shardvec.contract.convert_shard import search_result_from_proto
from shardvec.contract.errors import FailedPrecondition, InvalidArgument
from shardvec.contract.filters import Cond, Filter, parse_where
from shardvec.contract.limits import MAX_EF, MAX_K, TOKEN_HEADER
from shardvec.contract.settings import IndexSettings
from shardvec.contract.shard_requests import (
    RowBatch,
    check_get_ids,
    check_scroll,
    check_search,
    check_seq,
    row_batch,
)
from shardvec.contract.types import SearchResult, ShardScroll, ShardSearch, ShardWrite
from shardvec.shard.engine import ShardEngine
from shardvec.shard.local import LocalShard
from shardvec.shard.server import ShardServer
from shardvec.v1 import shard_pb2, shard_pb2_grpc
from tests import inproc

DIM = 8
N = 400
TOKEN = "t"
T = 30.0  # timeout of each LocalShard call


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


def _write(ids: list[str], vecs: np.ndarray, mds: list[dict[str, Any]]) -> ShardWrite:
    texts = [dumps_json(m) if m else "" for m in mds]
    return ShardWrite(ids=ids, vectors=vecs, metadata_json=texts)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[ShardEngine]:
    e = ShardEngine(tmp_path / "e", _settings(), build_threads=1)
    ids, vecs, mds = _rows()
    inproc.write(e, 1, ids, vecs, mds)
    yield e
    e.close()


def _same(a: SearchResult, b: SearchResult) -> None:
    assert a.ids.tolist() == b.ids.tolist()
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.counts, b.counts)


# ------------------------------------------- bad input is refused where the request is built

ONE = np.ones((1, DIM), np.float32)
NO_ROWS = np.empty((0, DIM), np.float32)


def _stage(seq: int, write: ShardWrite) -> Callable[[LocalShard], Coroutine[Any, Any, Any]]:
    return lambda s: s.stage(seq, write, T)


def _search(q: np.ndarray, k: int, **kw: Any) -> Callable[[LocalShard], Coroutine[Any, Any, Any]]:
    return lambda s: s.search(ShardSearch(q, k, **kw), T)


BAD_REQUESTS: dict[str, Callable[[LocalShard], Coroutine[Any, Any, Any]]] = {
    "write empty id": _stage(2, ShardWrite(ids=[""], vectors=ONE)),
    "write duplicate ids": _stage(2, ShardWrite(ids=["a", "a"], vectors=np.ones((2, DIM)))),
    "write wrong dim": _stage(2, ShardWrite(ids=["a"], vectors=np.ones((1, DIM + 1)))),
    "write NaN": _stage(2, ShardWrite(ids=["a"], vectors=np.full((1, DIM), np.nan))),
    "write zero cosine vector": _stage(2, ShardWrite(ids=["a"], vectors=np.zeros((1, DIM)))),
    "write rows != ids": _stage(2, ShardWrite(ids=["a", "b"], vectors=ONE)),
    "write no vectors": _stage(2, ShardWrite(ids=["a"])),
    "write nested metadata": _stage(
        2, ShardWrite(ids=["a"], vectors=ONE, metadata_json=['{"x": {"y": 1}}'])
    ),
    "write metadata not JSON": _stage(2, ShardWrite(ids=["a"], vectors=ONE, metadata_json=["{"])),
    "write seq 0": _stage(0, ShardWrite(ids=["a"], vectors=ONE)),
    "delete both": _stage(
        2, ShardWrite(delete_ids=["r1"], delete_where=parse_where({"i": 1}))
    ),
    "delete empty id": _stage(2, ShardWrite(delete_ids=[""])),
    "delete bad filter": _stage(2, ShardWrite(delete_where=Cond("i", "gt", "one"))),
    "get non-string ids": lambda s: s.get([1], True, False, T),  # type: ignore[list-item]
    "count bad filter": lambda s: s.count(Cond("$i", "eq", 1), T),
    "count bad buckets": lambda s: s.count(None, T, buckets=np.ones(3, np.bool_)),
    "search k 0": _search(_queries(), 0),
    "search k too large": _search(_queries(), MAX_K + 1),
    "search ef too large": _search(_queries(), 5, ef=MAX_EF + 1),
    "search wrong dim": _search(np.ones((1, DIM + 1), np.float32), 5),
    "search zero cosine query": _search(np.zeros((1, DIM), np.float32), 5),
    "search bad filter": _search(_queries(), 5, where=Cond("i", "in", ())),
    "search wrong threshold": _search(_queries(), 5, max_distance=0.5),
    "search NaN threshold": _search(_queries(), 5, min_score=float("nan")),
    "scroll limit 0": lambda s: s.scroll(ShardScroll(0, "", NUM_BUCKETS, 0), T),
    "scroll bucket past the end": lambda s: s.scroll(ShardScroll(0, "", NUM_BUCKETS + 1, 5), T),
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_bad_requests_are_refused_where_built(engine: ShardEngine, name: str) -> None:
    """The in-process replica builds each engine call through the contract's checks: a bad
    request is InvalidArgument and the engine is untouched."""
    before = engine.info()
    with pytest.raises(InvalidArgument):
        asyncio.run(BAD_REQUESTS[name](LocalShard("s", engine)))
    after = engine.info()
    assert (after["count"], after["applied_seq"], after["staged_seqs"]) == (
        before["count"],
        before["applied_seq"],
        before["staged_seqs"],
    )


def test_the_contract_checks_themselves() -> None:
    with pytest.raises(InvalidArgument, match=r"vectors\[0\]"):
        row_batch(ShardWrite(ids=["a"], vectors=np.full((1, DIM), np.inf)), DIM, "cosine")
    with pytest.raises(InvalidArgument, match="seq"):
        check_seq(True)
    with pytest.raises(InvalidArgument, match="ids"):
        check_get_ids("abc")
    with pytest.raises(InvalidArgument, match="min_score"):
        check_search(ShardSearch(_queries(), 3, max_distance=1.0), DIM, "dot")
    with pytest.raises(InvalidArgument, match="scroll"):
        check_scroll("not a request")  # type: ignore[arg-type]
    checked = check_search(ShardSearch(_queries().astype(np.float64), 3), DIM, "cosine")
    assert checked.queries.dtype == np.float32 and checked.ef is None
    rows = row_batch(_write(["a", "b"], np.ones((2, DIM)), [{"x": 1}, {}]), DIM, "cosine")
    assert rows.vectors.dtype == np.float32 and rows.metadatas == [{"x": 1}, {}]
    assert rows.documents == [None, None] and rows.delete_where is None


# ------------------------------------------ the engine's one path answers as the checked one

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


def test_the_engine_answers_as_the_checked_path(tmp_path: Path) -> None:
    """One engine written and read through LocalShard (requests checked as built), one
    called directly with the same values: the same answers, writes and counts."""
    ids, vecs, mds = _rows()
    checked_engine = ShardEngine(tmp_path / "checked", _settings(), build_threads=1)
    direct = ShardEngine(tmp_path / "direct", _settings(), build_threads=1)
    shard = LocalShard("checked", checked_engine)

    async def checked_write(seq: int, write: ShardWrite) -> int:
        await shard.stage(seq, write, T)
        return (await shard.resolve(seq, True, T)).affected

    def direct_write(seq: int, rows: RowBatch) -> int:
        direct.stage(seq, rows)
        return direct.resolve(seq, True).affected

    async def search(q: np.ndarray, **params: Any) -> SearchResult:
        return await shard.search(ShardSearch(q, 10, **params), T)

    async def main() -> None:
        assert await checked_write(1, _write(ids, vecs, mds)) == N
        assert direct_write(1, RowBatch(ids, vecs, [dict(m) for m in mds], [], [])) == N
        with pytest.raises(FailedPrecondition):  # an applied seq is never staged again
            direct.stage(1, RowBatch(ids, vecs, [dict(m) for m in mds], [], []))
        assert direct.resolve(1, True).applied is False  # nor applied again
        q = _queries()
        for params in SEARCHES:
            _same(await search(q, **params), direct.search(q, 10, **params))
        for where in (None, parse_where({"tag": "t0"}), parse_where({"rare": True})):
            assert await shard.count(where, T) == direct.count(where)
        pick = ["r3", "nope", "r7", "r10"]
        for inc_v, inc_m in ((True, True), (False, True), (True, False)):
            a = await shard.get(pick, inc_m, inc_v, T)
            b = [r for r in direct.get(pick, include_vectors=inc_v, include_metadata=inc_m) if r]
            assert a.ids == [r.id for r in b]
            if inc_m:
                assert [json.loads(t) if t else {} for t in a.metadata_json] == [
                    r.metadata for r in b
                ]
            if inc_v:
                want = [r.vector for r in b if r.vector is not None]
                np.testing.assert_array_equal(a.vectors, np.stack(want))
        where = parse_where({"tag": "t2"})
        deleted = await checked_write(2, ShardWrite(delete_where=where))
        assert deleted == direct_write(2, RowBatch([], NO_ROWS, [], [], [], where)) > 0
        gone = ["r1", "r4", "zz"]
        assert await checked_write(3, ShardWrite(delete_ids=gone)) == 2
        assert direct_write(3, RowBatch([], NO_ROWS, [], [], gone)) == 2
        for params in SEARCHES:
            _same(await search(q, **params), direct.search(q, 10, **params))
        info_c, info_d = checked_engine.info(), direct.info()
        for key in ("count", "applied_seq", "slots", "deleted_slots"):
            assert info_c[key] == info_d[key]

    try:
        asyncio.run(main())
    finally:
        checked_engine.close()
        direct.close()


# ------------------------------------------------------- the shard service over loopback


CHECKS = ("validate_ids", "validate_vectors", "parse_metadata_json", "validate_filter")


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
    """The service's answers equal the checked path's, with every check booby-trapped; it
    takes writes only as Stage then Resolve."""
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
    try:  # the answers of the checked path
        inproc.write(reference, 1, ids, vecs, mds)
        want = [reference.search(q, 10, where=w, **kw) for w, kw in searches]
        want_t0 = reference.count(t0)
        want_get = reference.get(["r1", "gone", "r8"], include_vectors=False)
        want_deleted = [
            inproc.delete(reference, 2, where=t0),
            inproc.delete(reference, 3, ids=["r1", "r3"]),
        ]
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

    def commit(stub: Any, stage: Any) -> Any:
        stub.Stage(stage, timeout=30, metadata=meta)
        resolve = shard_pb2.ShardResolveRequest(seq=stage.seq, commit=True)
        return stub.Resolve(resolve, timeout=30, metadata=meta)

    try:
        with grpc.insecure_channel(server.address) as channel, monkeypatch.context() as mp:
            for name in CHECKS:
                mp.setattr(requests_mod, name, _refuse)
            mp.setattr(convert_mod, "validate_filter", _refuse)
            stub = shard_pb2_grpc.ShardStub(channel)
            up = shard_pb2.ShardStageRequest(seq=1, ids=ids)
            up.vectors.dim = DIM
            up.vectors.packed = vecs.astype("<f4").tobytes()
            up.metadata_json.extend(dumps_json(m) if m else "" for m in mds)
            resp = commit(stub, up)
            assert (resp.applied, resp.affected, resp.applied_seq) == (True, N, 1)
            again = shard_pb2.ShardResolveRequest(seq=1, commit=True)
            assert stub.Resolve(again, timeout=30, metadata=meta).applied is False
            with pytest.raises(grpc.RpcError) as err:  # an applied seq is not staged again
                stub.Stage(up, timeout=30, metadata=meta)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
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

            delete = shard_pb2.ShardStageRequest(seq=2)
            delete.delete_filter.CopyFrom(filter_to_proto(t0))
            resp = commit(stub, delete)
            assert (resp.applied, resp.affected, resp.applied_seq) == (True, want_deleted[0], 2)
            by_id = shard_pb2.ShardStageRequest(seq=3, delete_ids=["r1", "r3"])
            assert commit(stub, by_id).affected == want_deleted[1]
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
