"""The checks of one shard's requests, made once, where a request for a shard engine is built.

A shard engine (shard/engine.py) checks nothing: each of its calls takes values these
functions (or the coordinator's edge, with the same validators, before it sends a request)
have checked. The shard's gRPC service decodes what the coordinator checked; the in-process
replica (shard/local.py) and tests build requests from their own values and check them here.
Each function returns the request normalised (float32 vectors, ints) or raises
InvalidArgument naming the offending field.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from shardvec.contract.buckets import NUM_BUCKETS
from shardvec.contract.errors import InvalidArgument
from shardvec.contract.filters import (
    DocFilter,
    Filter,
    validate_filter,
    validate_where_document,
)
from shardvec.contract.limits import MAX_DOCUMENT_BYTES, MAX_EF, MAX_K, MAX_METADATA_BYTES
from shardvec.contract.types import ShardScroll, ShardSearch, ShardWrite
from shardvec.contract.validation import (
    check_int,
    parse_metadata_json,
    validate_documents,
    validate_ids,
    validate_vectors,
)

MAX_SEQ = 2**63 - 1


@dataclass(frozen=True)
class RowBatch:
    """One shard write's rows as an engine stages them (checked by whoever built it):
    tombstones (`delete_ids`, or the live rows matching `delete_where`) first, then the
    upserts: ids, (n, dim) float32 vectors, one metadata object and one document (None:
    none) per id, or no documents at all."""

    ids: list[str]
    vectors: npt.NDArray[np.float32]
    metadatas: list[dict[str, Any]]
    documents: list[str | None]
    delete_ids: list[str]
    delete_where: Filter | None = None
    expires_at: list[float] | None = None  # one absolute expiry per id (0.0: never), or None


def check_seq(seq: object) -> int:
    """A batch sequence number: an integer in [1, 2**63 - 1]."""
    return check_int("seq", seq, 1, MAX_SEQ)


def row_batch(
    write: ShardWrite,
    dim: int,
    metric: str,
    *,
    max_metadata_bytes: int = MAX_METADATA_BYTES,
    max_document_bytes: int = MAX_DOCUMENT_BYTES,
) -> RowBatch:
    """`write`'s rows (a write without an update) checked: distinct valid ids with one vector
    each, metadata JSON objects and documents within their limits, at most one of
    delete_ids and delete_where, a valid filter."""
    ids = validate_ids(list(write.ids)) if len(write.ids) else []
    n = len(ids)
    if ids:
        if write.vectors is None:
            raise InvalidArgument(f"vectors: expected {n} rows (one per id), got none")
        vecs = validate_vectors(write.vectors, dim, metric)
        if len(vecs) != n:
            raise InvalidArgument(f"vectors: expected {n} rows (one per id), got {len(vecs)}")
    else:
        vecs = np.empty((0, dim), dtype=np.float32)
    mds = parse_metadata_json(list(write.metadata_json), n, max_bytes=max_metadata_bytes)
    docs = validate_documents(list(write.documents), n, max_bytes=max_document_bytes)
    dels = validate_ids(list(write.delete_ids), field="delete_ids") if write.delete_ids else []
    if write.delete_where is not None:
        if dels:
            raise InvalidArgument("stage: give at most one of delete_ids and delete_where")
        validate_filter(write.delete_where)
    return RowBatch(ids, vecs, mds, docs, dels, write.delete_where, check_expiries(write, n))


def check_expiries(write: ShardWrite, n: int) -> list[float] | None:
    """A write's absolute expiries: one finite number >= 0 per row (0: never), or None for
    none (the coordinator computed them; only their shape and values are checked here)."""
    if not len(write.expires_at):
        return None
    if len(write.expires_at) != n:
        raise InvalidArgument(f"expires_at: {len(write.expires_at)} values for {n} ids")
    out = [float(v) for v in write.expires_at]
    for i, v in enumerate(out):
        if not math.isfinite(v) or v < 0:
            raise InvalidArgument(f"expires_at[{i}]: must be 0 or unix seconds, got {v!r}")
    return out


def check_get_ids(ids: object) -> list[str]:
    """The ids of a get: a list of strings (unknown ids are simply not found)."""
    if isinstance(ids, (str, bytes)) or not isinstance(ids, (list, tuple)):
        raise InvalidArgument("ids: expected a list of strings")
    if not all(isinstance(i, str) for i in ids):
        raise InvalidArgument("ids: expected a list of strings")
    return list(ids)


def check_filters(where: Filter | None, where_document: DocFilter | None) -> None:
    """A metadata filter and a document filter, each valid or None."""
    if where is not None:
        validate_filter(where)
    if where_document is not None:
        validate_where_document(where_document)


def check_buckets(buckets: object) -> npt.NDArray[np.bool_] | None:
    """A routing-bucket mask: None, or a bool array of NUM_BUCKETS."""
    if buckets is None:
        return None
    arr = np.asarray(buckets)
    if arr.dtype != np.bool_ or arr.shape != (NUM_BUCKETS,):
        raise InvalidArgument(f"buckets: expected a bool mask of {NUM_BUCKETS} buckets")
    return arr


def check_threshold(metric: str, min_score: float | None, max_distance: float | None) -> None:
    """Raise InvalidArgument unless the threshold suits `metric` (max_distance for euclidean,
    min_score otherwise) and is a number."""
    euclid = metric == "euclidean"
    wrong, value = (min_score, max_distance) if euclid else (max_distance, min_score)
    if wrong is not None:
        use = "max_distance" if euclid else "min_score"
        raise InvalidArgument(f"metric {metric} takes {use} as its threshold")
    if value is not None and (not isinstance(value, (int, float)) or math.isnan(value)):
        raise InvalidArgument(f"score threshold must be a number, got {value!r}")


def check_search(request: ShardSearch, dim: int, metric: str) -> ShardSearch:
    """A search batch checked: finite (n, dim) queries (non-zero under cosine), k and ef in
    range, the metric's threshold, valid filters and bucket mask."""
    queries = validate_vectors(request.queries, dim, metric, field="queries")
    k = check_int("k", request.k, 1, MAX_K)
    ef = None if request.ef is None else check_int("ef", request.ef, 1, MAX_EF)
    check_threshold(metric, request.min_score, request.max_distance)
    check_filters(request.where, request.where_document)
    buckets = check_buckets(request.buckets)
    return dataclasses.replace(request, queries=queries, k=k, ef=ef, buckets=buckets)


def check_scroll(request: ShardScroll) -> ShardScroll:
    """A scroll request checked: positions, limits and filters."""
    if not isinstance(request, ShardScroll):
        raise InvalidArgument(f"scroll: expected ShardScroll, got {type(request).__name__}")
    check_int("after_bucket", request.after_bucket, 0, NUM_BUCKETS)
    check_int("end_bucket", request.end_bucket, 0, NUM_BUCKETS)
    check_int("limit", request.limit, 1, 1_000_000)
    check_int("max_bytes", request.max_bytes, 0, 1 << 40)
    if not isinstance(request.after_id, str):
        raise InvalidArgument("after_id: expected a string")
    check_filters(request.where, request.where_document)
    return request
