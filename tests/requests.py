"""Public API requests as a client would build them, shared by the tiers that call the service
(in process in tests/unit, over gRPC in tests/ray)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from shardvec.v1 import common_pb2
from shardvec.v1 import vector_search_pb2 as pb


def packed(vectors: Any) -> bytes:
    """Vectors as the wire's little-endian float32 bytes."""
    return np.ascontiguousarray(vectors, dtype="<f4").tobytes()


def upsert_request(
    name: str, ids: list[str], vectors: Any, metas: list[str] | None = None, *, dim: int
) -> pb.UpsertRequest:
    req = pb.UpsertRequest(collection=name, ids=ids, metadata_json=metas or [])
    req.vectors.dim = dim
    req.vectors.packed = packed(vectors)
    return req


def search_request(name: str, queries: Any, k: int = 5, *, dim: int, **kw: Any
                   ) -> pb.SearchRequest:  # fmt: skip
    req = pb.SearchRequest(collection=name, k=k, **kw)
    req.queries.dim = dim
    req.queries.packed = packed(queries)
    return req


def condition(field: str, op: int, value_json: str) -> common_pb2.Filter:
    """One `field op value` filter."""
    f = common_pb2.Filter()
    f.condition.field, f.condition.op, f.condition.value_json = field, op, value_json
    return f


def nested_not(levels: int) -> common_pb2.Filter:
    """`i == 1` under `levels` negations (a filter nested past the depth limit)."""
    f = condition("i", common_pb2.Condition.EQ, "1")
    for _ in range(levels):
        outer = common_pb2.Filter()
        outer.negate.CopyFrom(f)
        f = outer
    return f


async def restore_chunks(
    archive: bytes, restore_as: str, shards: int = 0, size: int = 1 << 16
) -> AsyncIterator[pb.SnapshotChunk]:
    """A RestoreSnapshot request stream: `archive` in chunks of `size` bytes, the first naming
    the new collection (and its shard count, 0: the archive's)."""
    for i, start in enumerate(range(0, len(archive), size)):
        first = i == 0
        yield pb.SnapshotChunk(data=archive[start : start + size],
                               restore_as=restore_as if first else "",
                               shards=shards if first else 0)  # fmt: skip
