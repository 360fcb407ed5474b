"""The fields of the public requests a `Collection` fills (expiry, documents, group-by and
diversity) and what it reads back from the answers (group values, facet values)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from shardvec.contract.convert import where_document_to_proto
from shardvec.contract.errors import InvalidArgument
from shardvec.contract.facets import facet_count_from_proto
from shardvec.contract.filters import parse_where_document
from shardvec.contract.types import Hit


def as_matrix(vectors: Any) -> np.ndarray:
    arr = np.asarray(vectors, dtype=np.float32)
    return arr.reshape(1, -1) if arr.ndim == 1 else arr


def set_expiry(
    req: Any,
    ttl_seconds: float | Sequence[float] | None,
    expires_at: float | Sequence[float] | None,
    n: int,
    start: int,
    stop: int,
) -> None:
    """Set an Upsert/Update request's ttl_seconds or expires_at for rows [start, stop) of
    `n`: a number for every row, or a sequence of one per row (sliced)."""
    for field, given in (("ttl_seconds", ttl_seconds), ("expires_at", expires_at)):
        if given is None:
            continue
        if isinstance(given, (int, float)):
            getattr(req, field).append(float(given))
            continue
        values = list(given)
        if len(values) != n:
            raise InvalidArgument(f"{field}: {len(values)} values for {n} ids")
        getattr(req, field).extend(float(v) for v in values[start:stop])


def set_document_options(
    req: Any, include_documents: bool, where_document: Mapping[str, Any] | None
) -> None:
    """Set a Search/Count/Get request's include.documents and where_document (Chroma form)."""
    if include_documents:
        req.include.documents = True
    if where_document is not None:
        req.where_document.CopyFrom(where_document_to_proto(parse_where_document(where_document)))


def set_shape_options(
    req: Any, group_by: str | None, groups: int | None, group_size: int | None,
    diversity: float | None, candidates: int | None,
) -> None:  # fmt: skip
    """Set a SearchRequest's group-by and diversity fields (the server checks them)."""
    if group_by is not None:
        req.group_by = group_by
        req.k = 0  # a grouped search returns groups x group_size hits
    if groups is not None:
        req.groups = groups
    if group_size is not None:
        req.group_size = group_size
    if diversity is not None:
        req.diversity = diversity
    if candidates is not None:
        req.candidates = candidates


def with_groups(resp: Any, hits: list[list[Hit]]) -> list[list[Hit]]:
    """`hits` with each hit's group value set, when the response is a grouped search's."""
    if not any(len(r.group_values) for r in resp.results):
        return hits
    return [
        [dataclasses.replace(h, group=json.loads(g)) for h, g in zip(row, r.group_values,
                                                                     strict=True)]
        for row, r in zip(hits, resp.results, strict=True)
    ]  # fmt: skip


def grouped(hits: Sequence[Hit]) -> list[tuple[Any, list[Hit]]]:
    """One query's hits of a grouped search as (group value, its hits), best group first."""
    out: list[tuple[Any, list[Hit]]] = []
    for h in hits:
        if not out or out[-1][0] != h.group or type(out[-1][0]) is not type(h.group):
            out.append((h.group, []))
        out[-1][1].append(h)
    return out


def facet_value(msg: Any) -> tuple[Any, int]:
    """A FacetCount as (value, count), a whole number as int."""
    value, count = facet_count_from_proto(msg)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value), count
    return value, count
