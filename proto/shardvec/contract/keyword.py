"""Keyword and hybrid search at the contract layer: the checks of the public request's text
queries and fusion parameters, and the shard wire messages (KeywordStats, KeywordSearch)
to and from their domain types."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shardvec.contract.buckets import decode_buckets, encode_buckets
from shardvec.contract.convert import (
    filter_from_proto,
    filter_to_proto,
    where_document_from_proto,
    where_document_to_proto,
)
from shardvec.contract.errors import InvalidArgument
from shardvec.contract.limits import (
    DEFAULT_ALPHA,
    DEFAULT_RRF_K,
    FUSIONS,
    HYBRID_DEPTH_FACTOR,
    MAX_RRF_K,
    MAX_TEXT_QUERY_BYTES,
    MAX_TEXT_QUERY_TERMS,
)
from shardvec.contract.types import KeywordSearch, KeywordStats, KeywordTerms
from shardvec.v1 import shard_pb2


@dataclass(frozen=True)
class Fusion:
    """How a hybrid search fuses its two legs: "rrf" (rank constant `rrf_k`) or "weighted"
    (the vector leg's weight `alpha`, the keyword leg's 1 - alpha)."""

    method: str = "rrf"
    rrf_k: int = DEFAULT_RRF_K
    alpha: float = DEFAULT_ALPHA


def validate_text_queries(texts: Sequence[str], field: str = "text_query") -> list[str]:
    """Each text non-blank and at most MAX_TEXT_QUERY_BYTES UTF-8 bytes; INVALID_ARGUMENT
    naming the field and row otherwise."""
    out = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidArgument(f"{field}[{i}]: expected a string, got {type(text).__name__}")
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_TEXT_QUERY_BYTES:
            raise InvalidArgument(
                f"{field}[{i}]: {size} bytes, the limit is {MAX_TEXT_QUERY_BYTES}"
            )
        if not text.strip():
            raise InvalidArgument(f"{field}[{i}]: empty text query")
        out.append(text)
    return out


def fusion_from_request(request: Any, hybrid: bool) -> Fusion | None:
    """The request's fusion (None for a search that is not hybrid), checked: fusion one of
    FUSIONS (""/unset: rrf), alpha in [0, 1] and only with weighted, rrf_k in [1, MAX_RRF_K]
    and only with rrf; fusion parameters on a search that is not hybrid are refused."""
    method = request.fusion
    has_alpha = request.HasField("alpha")
    if not hybrid:
        if method or has_alpha or request.rrf_k:
            raise InvalidArgument(
                "fusion: fusion, alpha and rrf_k need a hybrid search (text_query together "
                "with queries or query_texts)"
            )
        return None
    method = method or "rrf"
    if method not in FUSIONS:
        raise InvalidArgument(f"fusion: must be one of {', '.join(FUSIONS)}, got {method!r}")
    if method == "rrf":
        if has_alpha:
            raise InvalidArgument('alpha: only with fusion "weighted"')
        rrf_k = int(request.rrf_k) or DEFAULT_RRF_K
        if not 1 <= rrf_k <= MAX_RRF_K:
            raise InvalidArgument(f"rrf_k: must be in [1, {MAX_RRF_K}], got {rrf_k}")
        return Fusion("rrf", rrf_k=rrf_k)
    if request.rrf_k:
        raise InvalidArgument('rrf_k: only with fusion "rrf"')
    alpha = float(request.alpha) if has_alpha else DEFAULT_ALPHA
    if not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise InvalidArgument(f"alpha: must be in [0, 1], got {alpha}")
    return Fusion("weighted", alpha=alpha)


def leg_depth(k: int, max_k: int) -> int:
    """Candidates each leg of a hybrid search returns: HYBRID_DEPTH_FACTOR * k, at most max_k
    and at least k."""
    return max(k, min(HYBRID_DEPTH_FACTOR * k, max_k))


def check_terms(queries: Sequence[KeywordTerms], field: str = "text_query") -> None:
    """Every query has a term and at most MAX_TEXT_QUERY_TERMS (known once tokenized)."""
    for i, q in enumerate(queries):
        if not q.terms:
            raise InvalidArgument(
                f"{field}[{i}]: no searchable words (the tokenizer found no terms in it)"
            )
        if len(q.terms) > MAX_TEXT_QUERY_TERMS:
            raise InvalidArgument(
                f"{field}[{i}]: {len(q.terms)} terms, the limit is {MAX_TEXT_QUERY_TERMS}"
            )


# The shard wire.


def _terms_to_proto(out: Any, queries: Sequence[KeywordTerms]) -> None:
    for q in queries:
        out.add(terms=list(q.terms), doc_freqs=list(q.doc_freqs))


def _terms_from_proto(msgs: Any) -> list[KeywordTerms]:
    out = []
    for m in msgs:
        if len(m.terms) != len(m.doc_freqs):
            raise InvalidArgument("keyword terms: one document frequency per term expected")
        out.append(KeywordTerms(tuple(m.terms), tuple(int(f) for f in m.doc_freqs)))
    return out


def keyword_stats_to_proto(stats: KeywordStats) -> shard_pb2.KeywordStatsResponse:
    resp = shard_pb2.KeywordStatsResponse(
        doc_count=stats.doc_count, total_tokens=stats.total_tokens
    )
    _terms_to_proto(resp.queries, stats.queries)
    return resp


def keyword_stats_from_proto(resp: shard_pb2.KeywordStatsResponse) -> KeywordStats:
    return KeywordStats(
        _terms_from_proto(resp.queries), int(resp.doc_count), int(resp.total_tokens)
    )


def keyword_search_to_proto(s: KeywordSearch) -> shard_pb2.KeywordSearchRequest:
    req = shard_pb2.KeywordSearchRequest(
        doc_count=s.doc_count,
        total_tokens=s.total_tokens,
        k=s.k,
        include_metadata=s.include_metadata,
        include_vectors=s.include_vectors,
        include_documents=s.include_documents,
        buckets=encode_buckets(s.buckets),
    )
    _terms_to_proto(req.queries, s.queries)
    if s.where is not None:
        req.filter.CopyFrom(filter_to_proto(s.where))
    if s.where_document is not None:
        req.where_document.CopyFrom(where_document_to_proto(s.where_document))
    return req


def keyword_search_from_proto(req: shard_pb2.KeywordSearchRequest) -> KeywordSearch:
    """Decoded trusting the coordinator, which checked the filters at its edge."""
    where = filter_from_proto(req.filter, trusted=True) if req.HasField("filter") else None
    wd = (
        where_document_from_proto(req.where_document, trusted=True)
        if req.HasField("where_document")
        else None
    )
    return KeywordSearch(
        _terms_from_proto(req.queries),
        int(req.doc_count),
        int(req.total_tokens),
        int(req.k),
        where,
        wd,
        req.include_metadata,
        req.include_vectors,
        req.include_documents,
        decode_buckets(req.buckets),
    )
