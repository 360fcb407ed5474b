"""What the shard service (shard/server.py) decodes from its requests and checks of its
answers: filters decoded without re-checking (the coordinator checked them), metadata texts,
the size budget of a shard answer, and the chunks of a large search joined into one result."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from shardvec.contract.codec import loads_json
from shardvec.contract.convert import filter_from_proto, where_document_from_proto
from shardvec.contract.errors import InvalidArgument, ResourceExhausted
from shardvec.contract.filters import DocFilter, Filter
from shardvec.contract.limits import INTERNAL_MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES
from shardvec.contract.types import SearchResult


def request_filter(request: Any) -> Filter | None:
    """The request's filter, decoded without re-checking the tree (the coordinator did)."""
    return filter_from_proto(request.filter, trusted=True) if request.HasField("filter") else None


def request_where_document(request: Any) -> DocFilter | None:
    """The request's document filter, decoded without re-checking (the coordinator did)."""
    if not request.HasField("where_document"):
        return None
    return where_document_from_proto(request.where_document, trusted=True)


# What a shard answer's payload may hold: the internal message limit less an eighth for the
# protobuf framing (tags and lengths, a few bytes a field).
RESPONSE_BUDGET = MAX_MESSAGE_BYTES * 7 // 8


def text_chars(texts: np.ndarray | None) -> int:
    return sum(map(len, texts.ravel().tolist())) if texts is not None else 0


def check_response_size(text_chars: int, vector_bytes: int, what: str) -> None:
    """Refuse (RESOURCE_EXHAUSTED, which marks no replica) a response that could not be sent
    within the internal message limit, before it is built: its ids, metadata and documents
    (characters, at least one byte each) and its vectors. The coordinator sizes the public
    response; this keeps a shard's own answer sendable, so an oversized answer is a clear
    refusal and never a broken call that reads as a replica gone."""
    total = text_chars + vector_bytes
    if total > RESPONSE_BUDGET:
        raise ResourceExhausted(
            f"shard {what}: the response would hold at least {total} bytes ({text_chars} of "
            f"ids, metadata and documents, {vector_bytes} of vectors), more than a shard "
            f"response may carry ({RESPONSE_BUDGET}); ask for fewer queries, a smaller k "
            "or fewer included fields"
        )


def metadata_from_json(texts: Sequence[str], n: int) -> list[dict[str, Any]]:
    """One metadata object per row from its JSON text ("" or no texts at all meaning {}),
    decoded only: the coordinator validated the same texts before sending them."""
    if not texts:
        return [{} for _ in range(n)]
    out: list[dict[str, Any]] = []
    for i, text in enumerate(texts):
        try:
            out.append(loads_json(text) if text else {})
        except (ValueError, RecursionError) as exc:
            raise InvalidArgument(f"metadata_json[{i}]: invalid JSON: {exc}") from None
    return out


def concat_results(parts: list[SearchResult]) -> SearchResult:
    """One result of the chunks of a large search, in order."""
    first = parts[0]
    return SearchResult(
        np.concatenate([p.ids for p in parts]),
        np.concatenate([p.scores for p in parts]),
        np.concatenate([p.counts for p in parts]),
        np.concatenate([p.metadata for p in parts if p.metadata is not None])
        if first.metadata is not None
        else None,
        np.concatenate([p.vectors for p in parts if p.vectors is not None])
        if first.vectors is not None
        else None,
        np.concatenate([p.documents for p in parts if p.documents is not None])
        if first.documents is not None
        else None,
    )
