"""Conversions of the internal shard service's messages (`shardvec.v1.Shard`) to and from the
shard interface's domain types: stage and update requests, acks, get, count, search and its
payloads, info, changes, scroll pages and snapshot chunks (shared messages:
shardvec.contract.convert)."""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import numpy as np

from shardvec.contract.buckets import encode_buckets
from shardvec.contract.codec import decode_packed, encode_packed, loads_json
from shardvec.contract.convert import (
    filter_from_proto,
    filter_to_proto,
    pack_vectors,
    vectors_from_proto,
    where_document_from_proto,
    where_document_to_proto,
)
from shardvec.contract.errors import Unavailable
from shardvec.contract.filters import (
    DocFilter,
    Filter,
)
from shardvec.contract.types import (
    Change,
    GetResult,
    ScrollPage,
    SearchResult,
    ShardInfo,
    ShardScroll,
    ShardSearch,
    ShardUpdate,
    ShardWrite,
    SnapshotChunk,
    WriteAck,
)
from shardvec.v1 import shard_pb2


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
    expires = list(resp.expires_at) if len(resp.expires_at) == len(resp.ids) else []
    return GetResult(
        list(resp.ids), list(resp.metadata_json), vectors, list(resp.documents), expires
    )


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
