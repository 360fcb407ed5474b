"""Responses are sized before they are built (security review, "Hardening" 1a): a Search or
Get whose answer would pass max_message_bytes (metadata included) is RESOURCE_EXHAUSTED
naming the setting, and the size counted is never below protobuf's own."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest

from shardvec.contract.errors import ResourceExhausted
from shardvec.contract.settings import CollectionSpec, IndexSettings
from shardvec.contract.types import Hits
from shardvec.coordinator.api.service import VectorSearchService
from shardvec.coordinator.api.sizing import check_get_response, check_search_response
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.queries.batching import MicroBatcher
from shardvec.v1 import vector_search_pb2 as pb
from tests.fakes import FakeContext

DIM = 4


def _meta(i: int, size: int) -> str:
    return json.dumps(
        {"i": i, "pad": "é" * (size // 2)}, ensure_ascii=False
    )  # non-ASCII: bytes != chars


class _Collection:
    """Stands in for a CollectionRuntime: every search hits rows 0..k-1 with their metadata."""

    def __init__(self, meta_bytes: int) -> None:
        self.spec = CollectionSpec("c", IndexSettings(dim=DIM), 1, 1)
        self.dim = DIM
        self.meta_bytes = meta_bytes

    async def search(
        self, queries: np.ndarray, params: Any, deadline: float, packed: bytes | None = None
    ) -> Hits:
        nq, k = queries.shape[0], params.k
        ids = np.array([[f"row-{j}" for j in range(k)]] * nq, dtype=object)
        scores = np.ones((nq, k), dtype=np.float32)
        meta = np.array([[_meta(j, self.meta_bytes) for j in range(k)]] * nq, dtype=object)
        vecs = np.ones((nq, k, DIM), np.float32)
        return Hits(
            ids,
            scores,
            np.full(nq, k),
            meta if params.include_metadata else None,
            vecs if params.include_vectors else None,
        )

    async def get(
        self, ids: Any, include_metadata: bool, include_vectors: bool, deadline: float
    ) -> Any:
        ids = list(ids)
        metas = [_meta(i, self.meta_bytes) for i in range(len(ids))] if include_metadata else []
        return ids, metas, np.ones((len(ids), DIM), np.float32)

    async def get_documents(
        self, ids: Any, include_metadata: bool, include_vectors: bool, deadline: float,
        include_documents: bool,
    ) -> Any:  # fmt: skip
        """As get, with every row expiring (its absolute expiry is counted in the answer)."""
        found, metas, vectors = await self.get(ids, include_metadata, include_vectors, deadline)
        return found, metas, vectors, [], [2e9 + i for i in range(len(found))]


class _Runtime:
    def __init__(self, col: _Collection) -> None:
        self.col = col

    def get(self, name: str) -> _Collection:
        return self.col



def _service(meta_bytes: int, limit: int) -> VectorSearchService:
    settings = CoordinatorSettings(data_dir="/nonexistent", max_message_bytes=limit)
    return VectorSearchService(
        _Runtime(_Collection(meta_bytes)),
        settings,  # type: ignore[arg-type]
        MicroBatcher(passthrough_rows=1),
    )


def _search(nq: int, k: int, vectors: bool = False) -> Any:
    req = pb.SearchRequest(collection="c", k=k)
    req.queries.dim = DIM
    req.queries.packed = np.ones((nq, DIM), "<f4").tobytes()
    req.include.metadata = True
    req.include.vectors = vectors
    return req


def test_search_with_metadata_past_the_limit_is_refused_before_it_is_built() -> None:
    # 64 queries x k=10 x ~2 KB of metadata is ~1.3 MB of response for a 1 KB request.
    svc = _service(meta_bytes=2048, limit=1 << 20)
    with pytest.raises(ResourceExhausted, match="max_message_bytes"):
        asyncio.run(svc.Search(_search(64, 10), FakeContext()))
    resp = asyncio.run(svc.Search(_search(16, 10), FakeContext()))  # ~330 KB: served
    assert len(resp.results) == 16 and len(resp.results[0].metadata_json) == 10


def test_get_with_metadata_past_the_limit_is_refused() -> None:
    svc = _service(meta_bytes=4096, limit=1 << 20)
    req = pb.GetRequest(collection="c", ids=[f"row-{i}" for i in range(400)])
    req.include.metadata = True
    with pytest.raises(ResourceExhausted, match="max_message_bytes"):
        asyncio.run(svc.Get(req, FakeContext()))
    req = pb.GetRequest(collection="c", ids=[f"row-{i}" for i in range(100)])
    req.include.metadata = True
    assert len(asyncio.run(svc.Get(req, FakeContext())).metadata_json) == 100


@pytest.mark.parametrize("meta_bytes", [0, 10, 300, 70_000])
@pytest.mark.parametrize("vectors", [False, True])
def test_the_size_counted_bounds_protobufs_own(meta_bytes: int, vectors: bool) -> None:
    svc = _service(meta_bytes=meta_bytes, limit=64 << 20)  # the cap: no limit here
    resp = asyncio.run(svc.Search(_search(7, 13, vectors), FakeContext()))
    hits = asyncio.run(
        svc.runtime.get("c").search(  # type: ignore[attr-defined]
            np.ones((7, DIM), np.float32),
            svc._search_params(svc.runtime.get("c"), _search(7, 13, vectors)),
            0.0,
        )
    )
    counted = check_search_response(hits, DIM, 1 << 30)
    assert resp.ByteSize() <= counted <= resp.ByteSize() * 1.05 + 64
    greq = pb.GetRequest(collection="c", ids=[f"row-{i}" for i in range(9)])
    greq.include.metadata = True
    greq.include.vectors = vectors
    gresp = asyncio.run(svc.Get(greq, FakeContext()))
    assert len(gresp.expires_at) == 9
    counted = check_get_response(list(gresp.ids), list(gresp.metadata_json), DIM, vectors, 1 << 30,
                                 expiries=len(gresp.expires_at))  # fmt: skip
    assert gresp.ByteSize() <= counted <= gresp.ByteSize() * 1.05 + 64
