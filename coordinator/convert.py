"""Conversions between the public protobuf messages and the coordinator's domain types."""

from __future__ import annotations

from typing import Any

import numpy as np
from shardvec.contract.convert import METRIC_TO_PROTO, PROTO_TO_METRIC
from shardvec.contract.errors import InvalidArgument
from shardvec.contract.limits import MAX_DIM
from shardvec.contract.settings import CollectionSpec, IndexSettings
from shardvec.v1 import common_pb2
from shardvec.v1 import vector_search_pb2 as pb

from coordinator.collection import Hits
from coordinator.replicas import ReplicaSet

DEFAULT_INDEX = IndexSettings(dim=1)


def spec_from_request(req: Any) -> CollectionSpec:
    metric = PROTO_TO_METRIC.get(req.metric) if req.metric else "cosine"
    if metric is None:
        raise InvalidArgument(f"metric: unknown metric {req.metric}")
    if not 1 <= req.dimension <= MAX_DIM:
        raise InvalidArgument(f"dimension: must be in [1, {MAX_DIM}], got {req.dimension}")
    index = IndexSettings(
        dim=int(req.dimension),
        metric=metric,
        m=int(req.index.m) or DEFAULT_INDEX.m,
        ef_construction=int(req.index.ef_construction) or DEFAULT_INDEX.ef_construction,
        ef=int(req.index.ef) or DEFAULT_INDEX.ef,
    )
    return CollectionSpec(req.name, index, int(req.shards) or 1, int(req.replicas) or 1)


def collection_info(
    spec: CollectionSpec, sets: list[ReplicaSet] | None = None, count: int | None = None
) -> Any:
    info = pb.CollectionInfo(
        name=spec.name,
        dimension=spec.index.dim,
        metric=METRIC_TO_PROTO[spec.index.metric],
        shards=spec.shards,
        replicas=spec.replicas,
        index=common_pb2.IndexParams(
            m=spec.index.m, ef_construction=spec.index.ef_construction, ef=spec.index.ef
        ),
    )
    if count is not None:
        info.count = count
    for rs in sets or []:
        for r in rs.replicas:
            info.replica_states.add(
                shard=r.shard,
                replica=r.index,
                state=r.state.value,
                address=r.client.address if r.client else "",
                node_id=r.node_id,
                pid=r.pid,
                count=r.count,
                applied_seq=r.applied_seq,
            )
    return info


def search_response(hits: Hits, dim: int) -> Any:
    """One QueryResult per query row. The arrays become Python lists in one call each, and
    each row is one `add`: per-row NumPy slicing cost more than the search of a small batch."""
    resp = pb.SearchResponse()
    width = hits.ids.shape[1]
    add = resp.results.add
    for row_ids, row_scores, c in zip(
        hits.ids.tolist(), hits.scores.tolist(), hits.counts.tolist(), strict=True
    ):
        if c < width:
            row_ids, row_scores = row_ids[:c], row_scores[:c]
        res = add(ids=row_ids, scores=row_scores)
        if hits.metadata:
            res.metadata_json.extend(hits.metadata.get(i, "") for i in row_ids)
        if hits.vectors and row_ids:
            res.vectors = np.stack([hits.vectors[i] for i in row_ids]).astype("<f4").tobytes()
    return resp


def split_hits(hits: Hits, start: int, n: int) -> Hits:
    """Rows [start, start + n) of a batch's hits (the micro-batcher's splitter)."""
    sl = slice(start, start + n)
    return Hits(hits.ids[sl], hits.scores[sl], hits.counts[sl], hits.metadata, hits.vectors)
