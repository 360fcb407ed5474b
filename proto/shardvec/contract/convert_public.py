"""Conversions of the public API's messages (`shardvec.v1.VectorSearch`): a collection's spec
from CreateCollection, its description (CollectionInfo) both ways, and search and get answers
to the client's Hit and Record (shared messages: shardvec.contract.convert)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from shardvec.contract.codec import decode_packed, loads_json
from shardvec.contract.convert import (
    METRIC_TO_PROTO,
    PROTO_TO_METRIC,
)
from shardvec.contract.errors import InvalidArgument, Unavailable
from shardvec.contract.limits import (
    DEFAULT_TARGET_RECALL,
    EMBEDDINGS,
    MAX_DIM,
)
from shardvec.contract.settings import CollectionSpec, IndexSettings
from shardvec.contract.types import (
    Hit,
    Hits,
    Record,
    ReplicaStatus,
    TunedBreadth,
)
from shardvec.contract.validation import check_ttl
from shardvec.v1 import common_pb2
from shardvec.v1 import vector_search_pb2 as pb

DEFAULT_INDEX = IndexSettings(dim=1)


def spec_from_request(req: pb.CreateCollectionRequest) -> CollectionSpec:
    """The collection a CreateCollection asks for; 0 / unset fields take the defaults."""
    metric = PROTO_TO_METRIC.get(req.metric) if req.metric else "cosine"
    if metric is None:
        raise InvalidArgument(f"metric: unknown metric {req.metric}")
    if req.embedding and req.embedding not in EMBEDDINGS:
        known = ", ".join(sorted(EMBEDDINGS))
        raise InvalidArgument(
            f"embedding: unknown embedding function {req.embedding!r}; known: {known}"
        )
    # With an embedding function, dimension 0 means the model's own.
    dim = int(req.dimension) or EMBEDDINGS.get(req.embedding, 0)
    if not 1 <= dim <= MAX_DIM:
        raise InvalidArgument(f"dimension: must be in [1, {MAX_DIM}], got {req.dimension}")
    index = IndexSettings(
        dim=dim,
        metric=metric,
        m=int(req.index.m) or DEFAULT_INDEX.m,
        ef_construction=int(req.index.ef_construction) or DEFAULT_INDEX.ef_construction,
        ef=int(req.index.ef) or DEFAULT_INDEX.ef,
        text_tokenizer=req.text_tokenizer or DEFAULT_INDEX.text_tokenizer,
        payload_on_disk=req.payload_on_disk,
    )
    return CollectionSpec(
        req.name, index, int(req.shards) or 1, int(req.replicas) or 1, req.embedding,
        float(req.target_recall) or DEFAULT_TARGET_RECALL,
        check_ttl(req.ttl_seconds),
    )


def collection_info(
    spec: CollectionSpec,
    states: Sequence[ReplicaStatus] = (),
    count: int | None = None,
    layout_version: int = 1,
    change: dict[str, Any] | None = None,
    tuned: TunedBreadth | None = None,
) -> pb.CollectionInfo:
    info = pb.CollectionInfo(
        name=spec.name,
        dimension=spec.index.dim,
        metric=METRIC_TO_PROTO[spec.index.metric],
        shards=spec.shards,
        replicas=spec.replicas,
        index=common_pb2.IndexParams(
            m=spec.index.m, ef_construction=spec.index.ef_construction, ef=spec.index.ef
        ),
        embedding=spec.embedding,
        text_tokenizer=spec.index.text_tokenizer,
        target_recall=spec.target_recall,
        ttl_seconds=spec.ttl_seconds,
        payload_on_disk=spec.index.payload_on_disk,
    )
    if tuned is not None:
        info.recall_estimate = tuned.recall
        info.search_ef = tuned.ef
        info.tuned_rows = tuned.rows
        info.tuned_layout_version = tuned.layout_version
        info.recall_queries = tuned.queries
        info.tuned_unix = tuned.tuned_unix
    if count is not None:
        info.count = count
    info.layout_version = layout_version
    if change is not None:
        info.change.CopyFrom(pb.LayoutChange(**change))
    for st in states:
        info.replica_states.add(**st.to_dict())
    return info


def replica_status_from_proto(msg: pb.ReplicaInfo) -> ReplicaStatus:
    return ReplicaStatus(
        shard=int(msg.shard),
        replica=int(msg.replica),
        state=msg.state,
        address=msg.address,
        node_id=msg.node_id,
        pid=int(msg.pid),
        count=int(msg.count),
        applied_seq=int(msg.applied_seq),
        reason=msg.reason,
    )


def collection_info_to_dict(info: pb.CollectionInfo) -> dict[str, Any]:
    """A CollectionInfo as the client and the CLI show it."""
    return {
        "name": info.name,
        "dim": int(info.dimension),
        "metric": PROTO_TO_METRIC.get(info.metric, "?"),
        "shards": int(info.shards),
        "replicas": int(info.replicas),
        "m": int(info.index.m),
        "ef_construction": int(info.index.ef_construction),
        "ef": int(info.index.ef),
        "count": int(info.count) if info.HasField("count") else None,  # None: not countable now
        "embedding": info.embedding,
        "layout_version": int(info.layout_version),
        "change": {
            "kind": info.change.kind,
            "phase": info.change.phase,
            "target_shards": int(info.change.target_shards),
            "target_replicas": int(info.change.target_replicas),
            "rows_copied": int(info.change.rows_copied),
            "rows_total": int(info.change.rows_total),
            "started_unix": float(info.change.started_unix),
            "error": info.change.error,
        }
        if info.HasField("change")
        else None,
        "text_tokenizer": info.text_tokenizer or "unicode61",
        "target_recall": float(info.target_recall) or DEFAULT_TARGET_RECALL,
        "ttl_seconds": float(info.ttl_seconds),
        "payload_on_disk": bool(info.payload_on_disk),
        # The recall tuner's last measurement (None: not tuned yet) and the breadth in force.
        "recall_estimate": float(info.recall_estimate)
        if info.HasField("recall_estimate")
        else None,
        "search_ef": int(info.search_ef),
        "tuned_rows": int(info.tuned_rows),
        "tuned_layout_version": int(info.tuned_layout_version),
        "recall_queries": int(info.recall_queries),
        "tuned_unix": float(info.tuned_unix),
        "replica_states": [replica_status_from_proto(r).to_dict() for r in info.replica_states],
    }


def search_response(hits: Hits) -> pb.SearchResponse:
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
    if hits.metadata is not None:
        for res, texts, c in zip(resp.results, hits.metadata.tolist(), hits.counts.tolist(),
                                 strict=True):  # fmt: skip
            res.metadata_json.extend(texts[:c])
    if hits.vectors is not None:
        for res, vecs, c in zip(resp.results, hits.vectors, hits.counts.tolist(), strict=True):
            if c:
                res.vectors = np.ascontiguousarray(vecs[:c], dtype="<f4").tobytes()
    if hits.documents is not None:
        for res, docs, c in zip(resp.results, hits.documents.tolist(), hits.counts.tolist(),
                                strict=True):  # fmt: skip
            res.documents.extend(docs[:c])
    return resp


def _metadata(text: str) -> dict[str, Any]:
    value = loads_json(text) if text else {}
    return value if isinstance(value, dict) else {}


def hits_from_response(resp: pb.SearchResponse, dim: int) -> list[list[Hit]]:
    """The client's view of a SearchResponse: one list of hits per query, best first."""
    out: list[list[Hit]] = []
    for res in resp.results:
        vecs = decode_packed(res.vectors, dim) if res.vectors else None
        metas = [_metadata(m) for m in res.metadata_json]
        docs = list(res.documents)
        out.append(
            [
                Hit(
                    id_,
                    float(score),
                    metas[j] if metas else None,
                    vecs[j] if vecs is not None else None,
                    (docs[j] or None) if docs else None,
                )
                for j, (id_, score) in enumerate(zip(res.ids, res.scores, strict=True))
            ]
        )
    return out


def records_from_response(resp: pb.GetResponse | pb.ScrollResponse, dim: int) -> list[Record]:
    """The rows of a GetResponse (or a ScrollResponse), in its order (the vectors copied out
    of the message), each with its expiry (expires_at empty: none expires)."""
    vecs = decode_packed(resp.vectors.packed, dim) if resp.vectors.packed else None
    metas = list(resp.metadata_json)
    docs = list(resp.documents)
    expires = list(resp.expires_at)
    if expires and len(expires) != len(resp.ids):
        raise Unavailable(f"expires_at: {len(expires)} values for {len(resp.ids)} ids")
    return [
        Record(
            id_,
            vecs[j].copy() if vecs is not None else None,
            _metadata(metas[j]) if metas else None,
            (docs[j] or None) if docs else None,
            expires[j] if expires else 0.0,
        )
        for j, id_ in enumerate(resp.ids)
    ]
