"""Search by id without Ray: the stored vectors of the ids are the queries, the ids are left
out of every result (against brute force over the other rows), filters apply, and an unknown
id is NOT_FOUND naming it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardvec.contract.errors import InvalidArgument, NotFound
from shardvec.contract.types import Hits
from shardvec.coordinator.queries.by_id import exclude_ids
from shardvec.v1 import common_pb2
from shardvec.v1 import vector_search_pb2 as pb
from tests.unit.test_scroll import DIM, create, ctx, lt_filter, service, upsert


def test_exclude_ids_keeps_the_best_k_of_the_rest() -> None:
    ids = np.array([["a", "x", "b", "c"], ["x", "y", "", ""]], dtype=object)
    scores = np.array([[0.9, 0.8, 0.7, 0.6], [0.5, 0.4, np.nan, np.nan]], dtype=np.float32)
    meta = np.array([["ma", "mx", "mb", "mc"], ["mx", "my", "", ""]], dtype=object)
    vecs = np.arange(2 * 4 * 2, dtype=np.float32).reshape(2, 4, 2)
    out = exclude_ids(Hits(ids, scores, np.array([4, 2]), meta, vecs), {"x", "y"}, 2)
    assert out.ids.tolist() == [["a", "b"], ["", ""]]
    assert out.counts.tolist() == [2, 0]
    np.testing.assert_array_equal(out.scores[0], scores[0, [0, 2]])
    assert np.isnan(out.scores[1]).all()
    assert out.metadata is not None and out.metadata.tolist() == [["ma", "mb"], ["", ""]]
    assert out.vectors is not None
    np.testing.assert_array_equal(out.vectors[0], vecs[0, [0, 2]])


def _search_ids(ids: list[str], k: int, **kw: Any) -> Any:
    return pb.SearchRequest(collection="c", k=k, query_ids=ids, **kw)


def test_search_by_ids_matches_brute_force_over_the_other_rows(tmp_path: Path) -> None:
    async def main() -> None:
        svc = service(tmp_path)
        await create(svc, "c", shards=3)
        n = 400
        rows = [f"id-{i}" for i in range(n)]
        await upsert(svc, "c", rows, seed=5)
        vecs = np.random.default_rng(5).standard_normal((n, DIM)).astype(np.float32)
        unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        asked = ["id-3", "id-10", "id-200"]
        rows_asked = [3, 10, 200]
        k = 8
        resp = await svc.Search(_search_ids(asked, k, exact=True), ctx)
        assert len(resp.results) == 3
        for q, res in zip(rows_asked, resp.results, strict=True):
            sims = unit @ unit[q]
            sims[rows_asked] = -np.inf  # the asked ids are left out of every result
            want = [f"id-{j}" for j in np.argsort(-sims, kind="stable")[:k]]
            assert list(res.ids) == want
            assert not set(res.ids) & set(asked)
        # HNSW, too, never returns an asked id, and keeps k hits
        resp = await svc.Search(_search_ids(asked, k), ctx)
        assert all(len(r.ids) == k and not set(r.ids) & set(asked) for r in resp.results)
        # a filter applies (n is the row number: n < 100)
        f = lt_filter("n", 100)
        resp = await svc.Search(_search_ids(["id-3"], 5, filter=f, exact=True), ctx)
        sims = unit[:100] @ unit[3]
        sims[3] = -np.inf
        assert list(resp.results[0].ids) == [f"id-{j}" for j in np.argsort(-sims)[:5]]
        # metadata comes with the hits
        inc = common_pb2.Include(metadata=True)
        resp = await svc.Search(_search_ids(["id-3"], 3, include=inc), ctx)
        assert [f'{{"n":{int(i.split("-")[1])}}}' for i in resp.results[0].ids] == list(
            resp.results[0].metadata_json
        )
        with pytest.raises(NotFound, match=r"query_ids\[1\]: id 'nope' is not in collection 'c'"):
            await svc.Search(_search_ids(["id-1", "nope"], 5), ctx)
        with pytest.raises(InvalidArgument, match=r"query_ids\[1\]: duplicate"):
            await svc.Search(_search_ids(["id-1", "id-1"], 5), ctx)
        with pytest.raises(InvalidArgument, match="k \\+ len\\(query_ids\\) = 1025"):
            await svc.Search(_search_ids(["id-1"], 1024), ctx)
        both = _search_ids(["id-1"], 5)
        both.queries.dim = DIM
        both.queries.packed = np.ones(DIM, "<f4").tobytes()
        with pytest.raises(InvalidArgument, match="exactly one of queries"):
            await svc.Search(both, ctx)
        await svc.runtime.shutdown()

    asyncio.run(main())


def test_query_ids_of_invalid_utf8_are_named() -> None:
    from shardvec.coordinator.api.decoding import describe_problem

    good = pb.SearchRequest(collection="c", k=3, query_ids=["a", "bb"]).SerializeToString()
    bad = good.replace(b"bb", b"\xff\xfe")
    assert describe_problem(pb.SearchRequest.DESCRIPTOR, bad) == (
        "query_ids[1]: not valid UTF-8 (byte 0)"
    )
