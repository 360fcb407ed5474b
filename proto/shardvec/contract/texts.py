"""Checks on texts that are to be embedded (Search.query_texts, Upsert.documents without
vectors), made at the edge before any text reaches a model."""

from __future__ import annotations

from collections.abc import Sequence

from shardvec.contract.errors import FailedPrecondition, InvalidArgument
from shardvec.contract.limits import MAX_QUERY_TEXT_BYTES


def require_embedding(embedding: str, collection: str, field: str) -> None:
    """Texts need the collection's embedding function: FAILED_PRECONDITION without one."""
    if not embedding:
        raise FailedPrecondition(
            f"{field}: collection {collection!r} has no embedding function, so it takes "
            "vectors only; create it with embedding 'minilm' (shardvec create --embedding "
            "minilm) or embed the texts in the client"
        )


def validate_query_texts(texts: Sequence[str], max_bytes: int = MAX_QUERY_TEXT_BYTES) -> None:
    """Every query text is non-blank and at most `max_bytes` of UTF-8."""
    if not texts:
        raise InvalidArgument("query_texts: batch is empty")
    for i, text in enumerate(texts):
        _check_text(text, f"query_texts[{i}]", max_bytes)


def validate_documents_to_embed(documents: Sequence[str], n: int, max_bytes: int) -> None:
    """One non-blank document per id, each at most `max_bytes`, when they stand in for the
    vectors of an upsert."""
    if len(documents) != n:
        raise InvalidArgument(
            f"documents: {len(documents)} documents for {n} ids; without vectors every row "
            "needs its document"
        )
    for i, text in enumerate(documents):
        _check_text(text, f"documents[{i}]", max_bytes, "and no vector to stand in for it")


def _check_text(text: str, field: str, max_bytes: int, why: str = "") -> None:
    if not text.strip():
        raise InvalidArgument(f"{field}: the text is empty{' ' + why if why else ''}")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise InvalidArgument(f"{field}: the text is {size} bytes, the limit is {max_bytes}")
