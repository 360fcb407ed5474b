"""Facets at the contract layer: a facet's values, their order, the checks of a request, and
the shard wire messages (ShardFacet) to and from their domain values.

A facet value is a string, a number (float: 1 and 1.0 are one value) or a boolean (never a
number); a row whose field holds a list counts once for each distinct element; null and
missing count for nothing. Values are ranked by count, most first, then by type (booleans,
numbers, strings) and value, so equal counts come in one order on every server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

from shardvec.contract.buckets import decode_buckets, encode_buckets
from shardvec.contract.convert import (
    filter_from_proto,
    filter_to_proto,
    where_document_from_proto,
    where_document_to_proto,
)
from shardvec.contract.errors import InvalidArgument
from shardvec.contract.filters import DocFilter, Filter
from shardvec.contract.limits import DEFAULT_FACET_LIMIT, MAX_FACET_LIMIT, MAX_FIELD_CHARS
from shardvec.v1 import common_pb2, shard_pb2

FacetValue: TypeAlias = str | float | bool


@dataclass(frozen=True)
class FacetCounts:
    """One replica's answer: every value's count, and whether it holds the field at all."""

    counts: dict[tuple[int, FacetValue], int]  # (type rank, value) -> rows
    field_known: bool


BOOL_RANK, NUMBER_RANK, STRING_RANK = range(3)


def rank_of(value: FacetValue) -> tuple[int, FacetValue]:
    """(type rank, value): the key values are counted under and tie-broken by."""
    if isinstance(value, bool):
        return BOOL_RANK, value
    if isinstance(value, (int, float)):
        return NUMBER_RANK, float(value)
    return STRING_RANK, value


def check_field_name(name: object, field: str) -> str:
    """A metadata key as a facet or group-by names it; INVALID_ARGUMENT naming `field`."""
    if not isinstance(name, str):
        raise InvalidArgument(f"{field}: expected a metadata key (a string), got {name!r}")
    if not name:
        raise InvalidArgument(f"{field}: empty metadata key")
    if len(name) > MAX_FIELD_CHARS:
        raise InvalidArgument(f"{field}: a key is at most {MAX_FIELD_CHARS} characters, got "
                              f"{len(name)}")  # fmt: skip
    if name.startswith("$"):
        raise InvalidArgument(f"{field}: a metadata key does not start with '$', got {name!r}")
    return name


def check_facet_limit(limit: int) -> int:
    """The values a facet returns: 0 means DEFAULT_FACET_LIMIT; at most MAX_FACET_LIMIT."""
    if limit == 0:
        return DEFAULT_FACET_LIMIT
    if not 1 <= limit <= MAX_FACET_LIMIT:
        raise InvalidArgument(f"limit: must be in [1, {MAX_FACET_LIMIT}] (0: "
                              f"{DEFAULT_FACET_LIMIT}), got {limit}")  # fmt: skip
    return limit


def top_values(
    counts: Mapping[tuple[int, FacetValue], int], limit: int
) -> list[tuple[FacetValue, int]]:
    """The `limit` most frequent values, ranked as the module docstring says."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(key[1], n) for key, n in ranked[:limit] if n > 0]


def merge_counts(parts: Iterable[FacetCounts]) -> dict[tuple[int, FacetValue], int]:
    total: dict[tuple[int, FacetValue], int] = {}
    for part in parts:
        for key, n in part.counts.items():
            total[key] = total.get(key, 0) + n
    return total


def facet_count_to_proto(value: FacetValue, count: int) -> common_pb2.FacetCount:
    if isinstance(value, bool):
        return common_pb2.FacetCount(bool_value=value, count=count)
    if isinstance(value, (int, float)):
        return common_pb2.FacetCount(number_value=float(value), count=count)
    return common_pb2.FacetCount(string_value=value, count=count)


def facet_count_from_proto(msg: common_pb2.FacetCount) -> tuple[FacetValue, int]:
    which = msg.WhichOneof("value")
    value: FacetValue
    if which == "bool_value":
        value = bool(msg.bool_value)
    elif which == "number_value":
        value = float(msg.number_value)
    elif which == "string_value":
        value = str(msg.string_value)
    else:
        raise InvalidArgument("facet: a value with no type")
    return value, int(msg.count)


def facet_request(
    field: str, where: Filter | None, where_document: DocFilter | None,
    buckets: np.ndarray | None,
) -> shard_pb2.ShardFacetRequest:  # fmt: skip
    req = shard_pb2.ShardFacetRequest(field=field, buckets=encode_buckets(buckets))
    if where is not None:
        req.filter.CopyFrom(filter_to_proto(where))
    if where_document is not None:
        req.where_document.CopyFrom(where_document_to_proto(where_document))
    return req


def facet_request_from_proto(
    req: Any,
) -> tuple[str, Filter | None, DocFilter | None, np.ndarray | None]:
    """A ShardFacetRequest from the trusted coordinator: field, filters, buckets."""
    where = filter_from_proto(req.filter, trusted=True) if req.HasField("filter") else None
    wd = (where_document_from_proto(req.where_document, trusted=True)
          if req.HasField("where_document") else None)  # fmt: skip
    return req.field, where, wd, decode_buckets(req.buckets)


def facet_counts_to_proto(counts: FacetCounts) -> shard_pb2.ShardFacetResponse:
    resp = shard_pb2.ShardFacetResponse(field_known=counts.field_known)
    resp.values.extend(facet_count_to_proto(key[1], n) for key, n in counts.counts.items())
    return resp


def facet_counts_from_proto(resp: shard_pb2.ShardFacetResponse) -> FacetCounts:
    counts: dict[tuple[int, FacetValue], int] = {}
    for msg in resp.values:
        value, n = facet_count_from_proto(msg)
        counts[rank_of(value)] = n
    return FacetCounts(counts, bool(resp.field_known))
