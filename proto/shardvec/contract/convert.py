"""Conversions between protobuf messages and shardvec's domain types, in one place.

The shard service, the coordinator's public service and the client use these, so each wire
form is built and read in one place.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from shardvec.contract.buckets import encode_buckets
from shardvec.contract.codec import decode_packed, dumps_json, encode_packed, loads_json
from shardvec.contract.errors import InvalidArgument, Unavailable
from shardvec.contract.filters import (
    And,
    Cond,
    DocAnd,
    DocCond,
    DocFilter,
    DocOr,
    Filter,
    Not,
    Or,
    validate_filter,
    validate_where_document,
)
from shardvec.contract.limits import (
    DEFAULT_TARGET_RECALL,
    EMBEDDINGS,
    MAX_DIM,
    MAX_FILTER_DEPTH,
)
from shardvec.contract.settings import CollectionSpec, IndexSettings
from shardvec.contract.types import (
    Change,
    GetResult,
    Hit,
    Hits,
    Record,
    ReplicaStatus,
    ScrollPage,
    SearchResult,
    ShardInfo,
    ShardScroll,
    ShardSearch,
    ShardUpdate,
    ShardWrite,
    SnapshotChunk,
    TunedBreadth,
    WriteAck,
)
from shardvec.contract.validation import check_ttl
from shardvec.v1 import common_pb2, shard_pb2
from shardvec.v1 import vector_search_pb2 as pb

_OP_TO_PROTO = {
    "eq": common_pb2.Condition.EQ,
    "ne": common_pb2.Condition.NE,
    "gt": common_pb2.Condition.GT,
    "gte": common_pb2.Condition.GTE,
    "lt": common_pb2.Condition.LT,
    "lte": common_pb2.Condition.LTE,
    "in": common_pb2.Condition.IN,
    "nin": common_pb2.Condition.NIN,
    "exists": common_pb2.Condition.EXISTS,
    "contains": common_pb2.Condition.CONTAINS,
}
_PROTO_TO_OP = {v: k for k, v in _OP_TO_PROTO.items()}

METRIC_TO_PROTO = {
    "cosine": common_pb2.COSINE,
    "dot": common_pb2.DOT,
    "euclidean": common_pb2.EUCLIDEAN,
}
PROTO_TO_METRIC = {v: k for k, v in METRIC_TO_PROTO.items()}



def filter_to_proto(f: Filter) -> common_pb2.Filter:
    msg = common_pb2.Filter()
    if isinstance(f, Cond):
        value = list(f.value) if isinstance(f.value, tuple) else f.value
        msg.condition.field = f.field
        msg.condition.op = _OP_TO_PROTO[f.op]
        msg.condition.value_json = dumps_json(value)
    elif isinstance(f, And):
        msg.all.children.extend(filter_to_proto(c) for c in f.children)
    elif isinstance(f, Or):
        msg.any.children.extend(filter_to_proto(c) for c in f.children)
    else:
        msg.negate.CopyFrom(filter_to_proto(f.child))
    return msg


def filter_from_proto(msg: common_pb2.Filter, *, trusted: bool = False) -> Filter | None:
    """The domain filter of a wire filter; None when the message is empty.

    The tree is validated (operators, operand types, depth, size) unless `trusted`: the shard
    service takes filters only from the coordinator, which validated them at its edge.
    """
    if msg.WhichOneof("node") is None:
        return None
    f = _filter_node(msg, "filter", 0)
    if not trusted:
        validate_filter(f)
    return f


def _filter_node(msg: common_pb2.Filter, path: str, depth: int) -> Filter:
    if depth > MAX_FILTER_DEPTH:
        raise InvalidArgument(f"filter: nested deeper than {MAX_FILTER_DEPTH} at {path}")
    kind = msg.WhichOneof("node")
    if kind == "condition":
        c = msg.condition
        op = _PROTO_TO_OP.get(c.op)
        if op is None:
            raise InvalidArgument(f"filter: unknown operator {c.op} at {path}.{c.field}")
        try:
            value = loads_json(c.value_json)
        except ValueError as exc:
            raise InvalidArgument(
                f"filter: value of {path}.{c.field} is not valid JSON: {exc}"
            ) from None
        except RecursionError:
            raise InvalidArgument(
                f"filter: value of {path}.{c.field} is not valid JSON: nested too deeply"
            ) from None
        if op in ("in", "nin") and isinstance(value, list):
            value = tuple(value)
        return Cond(c.field, op, value)
    if kind in ("all", "any"):
        children = getattr(msg, kind).children
        op = "$and" if kind == "all" else "$or"
        if not children:
            raise InvalidArgument(f"filter: {op} needs at least one child at {path}")
        nodes = tuple(
            _filter_node(child, f"{path}.{kind}[{i}]", depth + 1)
            for i, child in enumerate(children)
        )
        return And(nodes) if kind == "all" else Or(nodes)
    if kind == "negate":
        return Not(_filter_node(msg.negate, f"{path}.negate", depth + 1))
    raise InvalidArgument(f"filter: empty filter node at {path}")


def where_document_to_proto(f: DocFilter) -> common_pb2.DocumentFilter:
    msg = common_pb2.DocumentFilter()
    if isinstance(f, DocCond):
        setattr(msg, f.op, f.text)
    elif isinstance(f, DocAnd):
        msg.all.children.extend(where_document_to_proto(c) for c in f.children)
    else:
        msg.any.children.extend(where_document_to_proto(c) for c in f.children)
    return msg


def where_document_from_proto(
    msg: common_pb2.DocumentFilter, *, trusted: bool = False
) -> DocFilter | None:
    """The domain document filter of a wire one; None when the message is empty. Validated
    (non-empty substrings, shape, depth, size) unless `trusted`."""
    if msg.WhichOneof("node") is None:
        return None
    f = _doc_node(msg, "where_document", 0)
    if not trusted:
        validate_where_document(f)
    return f


def _doc_node(msg: common_pb2.DocumentFilter, path: str, depth: int) -> DocFilter:
    if depth > MAX_FILTER_DEPTH:
        raise InvalidArgument(f"where_document: nested deeper than {MAX_FILTER_DEPTH} at {path}")
    kind = msg.WhichOneof("node")
    if kind in ("contains", "not_contains"):
        return DocCond(kind, getattr(msg, kind))
    if kind in ("all", "any"):
        children = getattr(msg, kind).children
        if not children:
            raise InvalidArgument(f"where_document: {kind} needs at least one child at {path}")
        nodes = tuple(
            _doc_node(c, f"{path}.{kind}[{i}]", depth + 1) for i, c in enumerate(children)
        )
        return DocAnd(nodes) if kind == "all" else DocOr(nodes)
    raise InvalidArgument(f"where_document: empty filter node at {path}")


def pack_vectors(msg: common_pb2.Vectors, vectors: np.ndarray) -> common_pb2.Vectors:
    """Fill `msg` with a (n, dim) array as little-endian float32 bytes (the fast wire form)."""
    arr = np.ascontiguousarray(vectors, dtype="<f4")
    msg.dim = int(arr.shape[1]) if arr.ndim == 2 else int(arr.shape[0])
    msg.packed = arr.tobytes()
    return msg


def vectors_from_proto(msg: common_pb2.Vectors, dim: int, *, field: str = "vectors") -> np.ndarray:
    """A (n, dim) float32 array from either wire form; the packed form is not copied."""
    if msg.packed and len(msg.values):
        raise InvalidArgument(f"{field}: set either packed or values, not both")
    if msg.dim and msg.dim != dim:
        raise InvalidArgument(f"{field}: expected dimension {dim}, got {msg.dim}")
    if msg.packed:
        return decode_packed(msg.packed, dim, field=field)
    values = np.asarray(msg.values, dtype=np.float32)
    if values.size == 0:
        raise InvalidArgument(f"{field}: batch is empty")
    if values.size % dim:
        raise InvalidArgument(f"{field}: {values.size} values is not a multiple of dimension {dim}")
    return values.reshape(-1, dim)


def changes_from_proto(resp: shard_pb2.ShardChangesResponse, dim: int) -> list[Change]:
    """Row changes of a Changes response; vectors are matched to the non-deleted rows."""
    vectors = decode_packed(resp.vectors.packed, dim) if resp.vectors.packed else np.empty((0, dim))
    out: list[Change] = []
    v = 0
    for c in resp.changes:
        if c.deleted:
            out.append(Change(c.id, int(c.seq), None, None, True))
        else:
            meta = loads_json(c.metadata_json) if c.metadata_json else {}
            doc = c.document or None
            out.append(Change(c.id, int(c.seq), vectors[v], meta, False, doc, c.expires_at))
            v += 1
    return out


def search_result_to_proto(
    ids: np.ndarray,
    scores: np.ndarray,
    metadata: np.ndarray | None = None,
    vectors: np.ndarray | None = None,
    documents: np.ndarray | None = None,
) -> shard_pb2.ShardSearchResponse:
    """A shard's (nq, k) ids and scores as one response: k, the ids row after row, and the
    scores packed as little-endian float32 (no Python loop per hit); with them, when given,
    each hit's metadata text and packed vector in the same layout."""
    resp = shard_pb2.ShardSearchResponse(k=int(ids.shape[1]))
    resp.ids.extend(ids.ravel().tolist())
    resp.scores = np.ascontiguousarray(scores, dtype="<f4").tobytes()
    if metadata is not None:
        resp.metadata_json.extend(metadata.ravel().tolist())
    if vectors is not None:
        resp.vectors = np.ascontiguousarray(vectors, dtype="<f4").tobytes()
    if documents is not None:
        resp.documents.extend(documents.ravel().tolist())
    return resp


def search_payload_from_proto(
    resp: shard_pb2.ShardSearchResponse, nq: int, dim: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The (nq, k) metadata texts and (nq, k, dim) vectors of a shard's search response,
    each None when the response does not carry it."""
    width = int(resp.k)
    metadata = vectors = None
    if len(resp.metadata_json) == nq * width and (nq * width):
        metadata = np.array(resp.metadata_json, dtype=object).reshape(nq, width)
    if resp.vectors:
        vectors = decode_packed(resp.vectors, dim).reshape(nq, width, dim)
    return metadata, vectors


def search_result_from_proto(
    resp: shard_pb2.ShardSearchResponse, nq: int
) -> tuple[np.ndarray, np.ndarray]:
    """The (nq, k) object array of ids and float32 scores of a shard's search response."""
    width = int(resp.k)
    ids = np.array(resp.ids, dtype=object).reshape(nq, width)
    return ids, np.frombuffer(resp.scores, dtype="<f4").reshape(nq, width)


def shard_hits_from_proto(
    resp: shard_pb2.ShardSearchResponse, nq: int, dim: int
) -> SearchResult:
    """A shard's search response as the engine's SearchResult, with its payloads."""
    ids, scores = search_result_from_proto(resp, nq)
    metadata, vectors = search_payload_from_proto(resp, nq, dim)
    counts = (~np.isnan(scores)).sum(axis=1).astype(np.int32)
    width = int(resp.k)
    docs = None
    if len(resp.documents) == nq * width and (nq * width):
        docs = np.array(resp.documents, dtype=object).reshape(nq, width)
    return SearchResult(ids, scores, counts, metadata, vectors, docs)


# The public API (shardvec.v1.VectorSearch).

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


def records_from_response(resp: pb.GetResponse, dim: int) -> list[Record]:
    """The rows of a GetResponse, in its order (the vectors copied out of the message)."""
    vecs = decode_packed(resp.vectors.packed, dim) if resp.vectors.packed else None
    metas = list(resp.metadata_json)
    docs = list(resp.documents)
    return [
        Record(
            id_,
            vecs[j].copy() if vecs is not None else None,
            _metadata(metas[j]) if metas else None,
            (docs[j] or None) if docs else None,
        )
        for j, id_ in enumerate(resp.ids)
    ]


# The internal shard service (shardvec.v1.Shard) in the shard interface's domain types.


def update_request(u: ShardUpdate) -> shard_pb2.ShardUpdateRequest:
    """The wire form of the update part of a staged batch (ShardStageRequest.update)."""
    req = shard_pb2.ShardUpdateRequest(
        ids=u.ids,
        metadata_json=u.metadata_json,
        replace_metadata=u.replace_metadata,
        documents=u.documents,
        upsert_missing=u.upsert_missing,
        max_metadata_bytes=u.max_metadata_bytes,
        reembed=u.reembed,
        expires_at=u.expires_at,
        insert_expires_at=u.insert_expires_at,
        accepted_at=u.accepted_at,
    )
    if u.vectors is not None:
        pack_vectors(req.vectors, u.vectors)
    return req


def shard_update_from_proto(req: shard_pb2.ShardUpdateRequest, dim: int) -> ShardUpdate:
    vectors = None
    if req.vectors.packed or len(req.vectors.values):
        vectors = vectors_from_proto(req.vectors, dim)
    return ShardUpdate(
        ids=list(req.ids),
        metadata_json=list(req.metadata_json),
        documents=list(req.documents),
        replace_metadata=req.replace_metadata,
        upsert_missing=req.upsert_missing,
        vectors=vectors,
        max_metadata_bytes=int(req.max_metadata_bytes),
        reembed=bool(req.reembed),
        expires_at=list(req.expires_at),
        insert_expires_at=float(req.insert_expires_at),
        accepted_at=float(req.accepted_at),
    )


def stage_request(seq: int, write: ShardWrite) -> shard_pb2.ShardStageRequest:
    """The wire form of one shard's part of an atomic batch, staged as `seq`."""
    req = shard_pb2.ShardStageRequest(seq=seq, ids=write.ids, delete_ids=write.delete_ids)
    if write.vectors is not None and len(write.ids):
        pack_vectors(req.vectors, write.vectors)
    if write.metadata_json:
        req.metadata_json.extend(write.metadata_json)
    if write.delete_where is not None:
        req.delete_filter.CopyFrom(filter_to_proto(write.delete_where))
    if write.documents:
        req.documents.extend(write.documents)
    if write.update is not None:
        req.update.CopyFrom(update_request(write.update))
    if len(write.expires_at):
        req.expires_at.extend(write.expires_at)
    return req


def write_ack_from_proto(resp: shard_pb2.ShardWriteResponse) -> WriteAck:
    return WriteAck(
        bool(resp.applied),
        int(resp.affected),
        int(resp.applied_seq),
        tuple(resp.missing_ids),
        int(resp.inserted),
    )


def get_request(
    ids: Sequence[str], include_metadata: bool, include_vectors: bool, include_documents: bool
) -> shard_pb2.ShardGetRequest:
    req = shard_pb2.ShardGetRequest(ids=ids)
    req.include.metadata = include_metadata
    req.include.vectors = include_vectors
    req.include.documents = include_documents
    return req


def get_result_from_proto(resp: shard_pb2.ShardGetResponse) -> GetResult:
    """The rows of a shard's get response (the server sets vectors.dim when it sends any)."""
    vectors = (
        decode_packed(resp.vectors.packed, int(resp.vectors.dim)) if resp.vectors.packed else None
    )
    return GetResult(list(resp.ids), list(resp.metadata_json), vectors, list(resp.documents))


def count_request(
    where: Filter | None,
    where_document: DocFilter | None = None,
    buckets: np.ndarray | None = None,
) -> shard_pb2.ShardCountRequest:
    req = shard_pb2.ShardCountRequest(buckets=encode_buckets(buckets))
    if where is not None:
        req.filter.CopyFrom(filter_to_proto(where))
    if where_document is not None:
        req.where_document.CopyFrom(where_document_to_proto(where_document))
    return req


def shard_search_to_proto(s: ShardSearch) -> shard_pb2.ShardSearchRequest:
    req = shard_pb2.ShardSearchRequest(
        k=s.k,
        exact=s.exact,
        ef=s.ef or 0,
        include_metadata=s.include_metadata,
        include_vectors=s.include_vectors,
        include_documents=s.include_documents,
        buckets=encode_buckets(s.buckets),
    )
    if s.where_document is not None:
        req.where_document.CopyFrom(where_document_to_proto(s.where_document))
    req.queries.dim = int(s.queries.shape[1])
    req.queries.packed = s.packed if s.packed is not None else encode_packed(s.queries)
    if s.where is not None:
        req.filter.CopyFrom(filter_to_proto(s.where))
    if s.min_score is not None:
        req.min_score = s.min_score
    if s.max_distance is not None:
        req.max_distance = s.max_distance
    return req


_SEARCH_PAYLOADS: weakref.WeakKeyDictionary[ShardSearch, bytes] = weakref.WeakKeyDictionary()


def shard_search_payload(s: ShardSearch) -> bytes:
    """`s` as serialized ShardSearchRequest bytes, built once per batch however many shards it
    goes to: serializing 1.5 MB of queries once instead of S times keeps it off the fan-out."""
    payload = _SEARCH_PAYLOADS.get(s)
    if payload is None:
        payload = _SEARCH_PAYLOADS[s] = shard_search_to_proto(s).SerializeToString()
    return payload


def shard_info_from_proto(resp: shard_pb2.ShardInfoResponse) -> ShardInfo:
    figures = loads_json(resp.info_json) if resp.info_json else {}
    return ShardInfo(
        count=int(resp.count),
        applied_seq=int(resp.applied_seq),
        checkpoint_seq=int(resp.checkpoint_seq),
        pid=int(resp.pid),
        node_id=resp.node_id,
        figures=figures if isinstance(figures, dict) else {},
        staged=tuple(int(s) for s in resp.staged_seqs),
    )


def snapshot_chunk_from_proto(chunk: shard_pb2.ShardSnapshotChunk) -> SnapshotChunk:
    return SnapshotChunk(chunk.manifest_json, chunk.data)


# Paging (Scroll) on the internal shard service.


def shard_scroll_to_proto(s: ShardScroll) -> shard_pb2.ShardScrollRequest:
    req = shard_pb2.ShardScrollRequest(
        after_bucket=s.after_bucket,
        after_id=s.after_id,
        end_bucket=s.end_bucket,
        limit=s.limit,
        max_bytes=s.max_bytes,
    )
    req.include.metadata = s.include_metadata
    req.include.vectors = s.include_vectors
    req.include.documents = s.include_documents
    if s.where is not None:
        req.filter.CopyFrom(filter_to_proto(s.where))
    if s.where_document is not None:
        req.where_document.CopyFrom(where_document_to_proto(s.where_document))
    return req


def shard_scroll_from_proto(
    req: shard_pb2.ShardScrollRequest, *, trusted: bool = False
) -> ShardScroll:
    where = filter_from_proto(req.filter, trusted=trusted) if req.HasField("filter") else None
    where_document = (
        where_document_from_proto(req.where_document, trusted=trusted)
        if req.HasField("where_document")
        else None
    )
    return ShardScroll(
        after_bucket=int(req.after_bucket),
        after_id=req.after_id,
        end_bucket=int(req.end_bucket),
        limit=int(req.limit),
        where=where,
        include_metadata=req.include.metadata,
        include_vectors=req.include.vectors,
        max_bytes=int(req.max_bytes),
        where_document=where_document,
        include_documents=req.include.documents,
    )


def scroll_page_to_proto(page: ScrollPage, dim: int) -> shard_pb2.ShardScrollResponse:
    resp = shard_pb2.ShardScrollResponse(
        ids=page.ids,
        metadata_json=page.metadata_json,
        last_bucket=page.last_bucket,
        last_id=page.last_id,
        done=page.done,
    )
    if page.documents is not None:
        resp.documents.extend(page.documents)
    if page.vectors is not None:
        resp.vectors.dim = dim
        resp.vectors.packed = encode_packed(page.vectors) if len(page.vectors) else b""
    if page.expires_at is not None:
        resp.expires_at.extend(page.expires_at)
    return resp


def scroll_page_from_proto(
    resp: shard_pb2.ShardScrollResponse,
    dim: int,
    include_vectors: bool,
    include_documents: bool = False,
) -> ScrollPage:
    vectors = None
    if include_vectors:
        vectors = (
            decode_packed(resp.vectors.packed, dim)
            if resp.vectors.packed
            else np.empty((0, dim), dtype=np.float32)
        )
        if len(vectors) != len(resp.ids):
            raise Unavailable(f"a shard answered a scroll with {len(vectors)} vectors for "
                              f"{len(resp.ids)} rows")
    return ScrollPage(
        list(resp.ids),
        list(resp.metadata_json),
        vectors,
        int(resp.last_bucket),
        resp.last_id,
        bool(resp.done),
        _scroll_documents(resp, include_documents),
        list(resp.expires_at) if len(resp.expires_at) == len(resp.ids) and resp.ids else None,
    )


def _scroll_documents(resp: shard_pb2.ShardScrollResponse, asked: bool) -> list[str] | None:
    if not asked:
        return None
    if len(resp.documents) != len(resp.ids):
        raise Unavailable(f"a shard answered a scroll with {len(resp.documents)} documents for "
                          f"{len(resp.ids)} rows")
    return list(resp.documents)
