"""Chroma's shapes for shardvec's values: distances, column-wise results, collection metadata.

Pure conversions, no I/O, so they are unit-tested without a cluster (cluster/chroma.py uses
them). Chroma reports distances (smaller is closer) in its hnswlib spaces; shardvec reports
scores in its metrics:

    Chroma space   shardvec metric   shardvec score        Chroma distance
    "l2"           "euclidean"       sqrt(sum (a-b)^2)     score ** 2 (squared, as hnswlib)
    "cosine"       "cosine"          cosine similarity     1 - score
    "ip"           "dot"             a . b                 1 - score
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence, Sized
from typing import Any

from shardvec.contract.errors import InvalidArgument
from shardvec.contract.types import Hit, Record

SPACE_TO_METRIC = {"l2": "euclidean", "cosine": "cosine", "ip": "dot"}
METRIC_TO_SPACE = {v: k for k, v in SPACE_TO_METRIC.items()}
DEFAULT_SPACE = "l2"  # Chroma's default space
# Collection metadata keys shardvec keeps (as the collection's settings); others are refused.
HNSW_KEYS = {
    "hnsw:space": "metric",
    "hnsw:M": "m",
    "hnsw:construction_ef": "ef_construction",
    "hnsw:search_ef": "ef",
}
INCLUDABLE = ("embeddings", "documents", "metadatas", "distances")
QUERY_INCLUDE = ("metadatas", "documents", "distances")
GET_INCLUDE = ("metadatas", "documents")


def distance(metric: str, score: float) -> float:
    """Chroma's distance for a shardvec score (see the table above)."""
    if metric == "euclidean":
        return score * score
    if metric in ("cosine", "dot"):
        return 1.0 - score
    raise InvalidArgument(f"unknown metric {metric!r}")


def check_include(include: Sequence[str], *, query: bool) -> set[str]:
    """The include list as a set; InvalidArgument names a value shardvec does not return."""
    allowed = INCLUDABLE if query else INCLUDABLE[:3]
    got = set(include)
    bad = sorted(got - set(allowed))
    if bad:
        raise InvalidArgument(f"include: {', '.join(map(repr, bad))} not one of {list(allowed)}")
    return got


def query_result(hits: Sequence[Sequence[Hit]], metric: str, include: set[str]) -> dict[str, Any]:
    """Chroma's QueryResult: one list per query in every column, None for a column left out."""
    return {
        "ids": [[h.id for h in row] for row in hits],
        "embeddings": [[h.vector for h in row] for row in hits]
        if "embeddings" in include
        else None,
        "documents": [[h.document for h in row] for row in hits]
        if "documents" in include
        else None,
        "uris": None,
        "data": None,
        "metadatas": [[h.metadata or None for h in row] for row in hits]
        if "metadatas" in include
        else None,
        "distances": [[distance(metric, h.score) for h in row] for row in hits]
        if "distances" in include
        else None,
        "included": [i for i in INCLUDABLE if i in include],
    }


def get_result(records: Sequence[Record], include: set[str]) -> dict[str, Any]:
    """Chroma's GetResult: one entry per row in every column, None for a column left out."""
    return {
        "ids": [r.id for r in records],
        "embeddings": [r.vector for r in records] if "embeddings" in include else None,
        "documents": [r.document for r in records] if "documents" in include else None,
        "uris": None,
        "data": None,
        "metadatas": [r.metadata or None for r in records] if "metadatas" in include else None,
        "included": [i for i in INCLUDABLE if i in include],
    }


def settings_from_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Native create_collection arguments for Chroma's collection metadata: the `hnsw:` keys
    shardvec has settings for (space defaults to Chroma's "l2"); any other key is refused,
    since shardvec stores no free-form collection metadata."""
    meta = dict(metadata or {})
    other = sorted(set(meta) - set(HNSW_KEYS))
    if other:
        raise InvalidArgument(
            f"collection metadata: shardvec keeps only {sorted(HNSW_KEYS)}, "
            f"not {', '.join(map(repr, other))}"
        )
    space = meta.pop("hnsw:space", DEFAULT_SPACE)
    if space not in SPACE_TO_METRIC:
        raise InvalidArgument(f"hnsw:space must be one of {sorted(SPACE_TO_METRIC)}, got {space!r}")
    out: dict[str, Any] = {"metric": SPACE_TO_METRIC[space]}
    for key, value in meta.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise InvalidArgument(f"{key} must be a positive integer, got {value!r}")
        out[HNSW_KEYS[key]] = value
    return out


def metadata_from_info(info: Mapping[str, Any]) -> dict[str, Any]:
    """The collection metadata Chroma would show for a native description."""
    meta: dict[str, Any] = {"hnsw:space": METRIC_TO_SPACE.get(info["metric"], info["metric"])}
    for key, field in HNSW_KEYS.items():
        if field != "metric" and info.get(field):
            meta[key] = int(info[field])
    return meta


def merge_metadata(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """Chroma's update of a row's metadata: the new keys over the old, a None value removing
    its key; no new metadata keeps the old."""
    if new is None:
        return dict(old) if old else None
    merged = {**(old or {}), **new}
    return {k: v for k, v in merged.items() if v is not None} or None


def check_rows(ids: Sequence[str], **columns: Sized | None) -> None:
    """Chroma's checks on a write: unique ids, and one entry per id in each column given."""
    dups = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dups:
        raise InvalidArgument(f"duplicate ids: {', '.join(map(repr, dups[:10]))}")
    for name, column in columns.items():
        if column is not None and len(column) != len(ids):
            raise InvalidArgument(f"{len(column)} {name} for {len(ids)} ids")
