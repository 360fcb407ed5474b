"""Get by filter (no ids, a limit) and Scroll with documents and where_document, through the
public service over real engines (SQLite + hnswlib) and no Ray."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from shardvec.contract.errors import InvalidArgument
from shardvec.coordinator.api.service import VectorSearchService
from shardvec.v1 import common_pb2
from shardvec.v1 import vector_search_pb2 as pb
from tests.unit.test_scroll import DIM, create, ctx, service

DOCS = {0: "apache kafka client", 1: "redis cache", 2: "kafka streams", 3: None}


async def _load(svc: VectorSearchService, name: str, n: int) -> None:
    ids = [f"id-{i}" for i in range(n)]
    req = pb.UpsertRequest(
        collection=name,
        ids=ids,
        metadata_json=[json.dumps({"n": i, "even": i % 2 == 0}) for i in range(n)],
        documents=[DOCS[i % 4] or "" for i in range(n)],
    )
    req.vectors.dim = DIM
    req.vectors.packed = np.random.default_rng(1).standard_normal((n, DIM)).astype("<f4").tobytes()
    await svc.Upsert(req, ctx)


def _contains(text: str) -> common_pb2.DocumentFilter:
    return common_pb2.DocumentFilter(contains=text)


def _even() -> common_pb2.Filter:
    f = common_pb2.Filter()
    f.condition.field = "even"
    f.condition.op = common_pb2.Condition.EQ
    f.condition.value_json = "true"
    return f


def test_get_by_filter_with_a_limit_and_scroll_with_documents(tmp_path: Path) -> None:
    async def run() -> None:
        svc = service(tmp_path)
        await create(svc, "c", shards=3)
        await _load(svc, "c", 200)
        expect_kafka = {f"id-{i}" for i in range(200) if DOCS[i % 4] and "kafka" in DOCS[i % 4]}
        # Get by where_document, every match (the limit above the match count)
        req = pb.GetRequest(collection="c", where_document=_contains("kafka"), limit=1000)
        req.include.documents = True
        got = await svc.Get(req, ctx)
        assert set(got.ids) == expect_kafka and len(got.ids) == len(expect_kafka)
        assert all("kafka" in d for d in got.documents)
        # ... combined with a metadata filter and a limit: the first rows of the scroll order
        req = pb.GetRequest(collection="c", filter=_even(), where_document=_contains("kafka"),
                            limit=7)
        req.include.metadata = True
        req.include.vectors = True
        got = await svc.Get(req, ctx)
        both = {i for i in expect_kafka if int(i.split("-")[1]) % 2 == 0}
        assert len(got.ids) == 7 and set(got.ids) <= both
        assert all(json.loads(m)["even"] for m in got.metadata_json)
        assert len(got.vectors.packed) == 7 * DIM * 4
        # with neither: every row, up to the limit
        got = await svc.Get(pb.GetRequest(collection="c", limit=50), ctx)
        assert len(got.ids) == 50 and len(set(got.ids)) == 50
        # Scroll returns documents and applies where_document, page by page
        seen: list[str] = []
        cursor = b""
        while True:
            sreq = pb.ScrollRequest(collection="c", limit=9, cursor=cursor,
                                    where_document=common_pb2.DocumentFilter(not_contains="kafka"))
            sreq.include.documents = True
            page = await svc.Scroll(sreq, ctx)
            assert len(page.documents) == len(page.ids)
            assert all("kafka" not in d for d in page.documents)
            seen.extend(page.ids)
            if not page.next_cursor:
                break
            cursor = page.next_cursor
        assert set(seen) == {f"id-{i}" for i in range(200)} - expect_kafka
        assert len(seen) == len(set(seen))

    asyncio.run(run())


def test_get_by_filter_bad_input(tmp_path: Path) -> None:
    async def run() -> None:
        svc = service(tmp_path, max_scroll_rows=100)
        await create(svc, "c", shards=2)
        await _load(svc, "c", 20)
        cases = [
            (pb.GetRequest(collection="c", limit=101), "over the cap 100"),
            (pb.GetRequest(collection="c", ids=["id-1"], filter=_even()), "not both"),
            (pb.GetRequest(collection="c", ids=["id-1"], limit=2), "Get by filter"),
        ]
        empty = pb.GetRequest(collection="c")
        empty.where_document.SetInParent()
        cases.append((empty, "where_document: empty"))
        for req, message in cases:
            with pytest.raises(InvalidArgument, match=message):
                await svc.Get(req, ctx)
        sreq = pb.ScrollRequest(collection="c")
        sreq.where_document.SetInParent()
        with pytest.raises(InvalidArgument, match="where_document: empty"):
            await svc.Scroll(sreq, ctx)

    asyncio.run(run())
