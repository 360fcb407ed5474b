"""Sizing a public response before it is built, against `max_message_bytes`.

A small request can ask for a large answer: a Search of 4,096 queries at k=200 with metadata
repeats each hit's stored metadata once per hit slot. The edge computes the wire size of the
response from what it is about to put in it (ids, scores, metadata JSON, vectors, documents:
a 1 MiB document counts in full, once per hit slot that carries it), adding up
row by row and stopping as soon as the total passes the limit, and refuses with
RESOURCE_EXHAUSTED before any protobuf is built. The count is an upper bound of protobuf's
encoding (every length prefix is counted at its full varint width), so a response this
accepts is never refused by gRPC's own "message larger than max".
"""

from __future__ import annotations

from collections.abc import Sequence

from shardvec.contract.errors import ResourceExhausted
from shardvec.contract.types import Hits

_TAG = 1  # every field number of these messages is < 16: one tag byte


def varint_bytes(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


def field_bytes(n: int) -> int:
    """A length-delimited field carrying `n` bytes: tag, length prefix, payload."""
    return _TAG + varint_bytes(n) + n


def text_bytes(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode("utf-8"))


def _refuse(what: str, size: int, limit: int) -> ResourceExhausted:
    return ResourceExhausted(
        f"{what}: the response would hold more than {size} bytes (ids, scores, metadata, "
        f"vectors and documents), the limit is {limit} (max_message_bytes); ask for fewer "
        f"rows, a smaller k or without metadata or documents"
    )


def check_search_response(hits: Hits, dim: int, limit: int, what: str = "search") -> int:
    """The SearchResponse's size for `hits` (bytes); ResourceExhausted once it passes `limit`."""
    vector_bytes = 4 * dim if hits.vectors is not None else 0
    texts = hits.metadata.tolist() if hits.metadata is not None else None
    docs = hits.documents.tolist() if hits.documents is not None else None
    total = 0
    for r, (row_ids, c) in enumerate(zip(hits.ids.tolist(), hits.counts.tolist(), strict=True)):
        row = sum(field_bytes(text_bytes(id_)) for id_ in row_ids[:c])
        if texts is not None:
            row += sum(field_bytes(text_bytes(m)) for m in texts[r][:c])
        if docs is not None:
            row += sum(field_bytes(text_bytes(d)) for d in docs[r][:c])
        if c:
            row += field_bytes(4 * c)  # scores, packed float
            if vector_bytes:
                row += field_bytes(vector_bytes * c)
        total += field_bytes(row)
        if total > limit:
            raise _refuse(what, total, limit)
    return total


def check_get_response(
    ids: Sequence[str],
    metadata_json: Sequence[str],
    dim: int,
    with_vectors: bool,
    limit: int,
    documents: Sequence[str] = (),
    expiries: int = 0,
) -> int:
    """The GetResponse's size (bytes), with `expiries` packed doubles (expires_at);
    ResourceExhausted once it passes `limit`."""
    total = 0
    for id_ in ids:
        total += field_bytes(text_bytes(id_))
    for texts in (metadata_json, documents):
        for m in texts:
            total += field_bytes(text_bytes(m))
            if total > limit:
                raise _refuse("get", total, limit)
    if with_vectors and ids:
        vectors = 4 * dim * len(ids)
        total += field_bytes(varint_bytes(dim) + _TAG + field_bytes(vectors))
    if expiries:
        total += 1 + field_bytes(8 * expiries)  # field 263's tag takes two bytes
    if total > limit:
        raise _refuse("get", total, limit)
    return total
