"""Group-by and diverse results at the contract layer: the checks of a search request's
group_by / groups / group_size and diversity / candidates, a group's value as it travels
(canonical JSON), and the shard wire messages of a grouped search.

A row's group is the value of its metadata field when that is a string, a number or a
boolean; a row whose field is missing, null or a list forms no group. Numbers are one value
whatever their spelling (1 and 1.0 are the group "1"); a boolean is never a number.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from shardvec.contract.buckets import decode_buckets
from shardvec.contract.convert import (
    filter_from_proto,
    vectors_from_proto,
    where_document_from_proto,
)
from shardvec.contract.convert_shard import (
    search_result_to_proto,
    shard_hits_from_proto,
    shard_search_to_proto,
)
from shardvec.contract.errors import InvalidArgument
from shardvec.contract.facets import check_field_name
from shardvec.contract.filters import Scalar
from shardvec.contract.limits import (
    DEFAULT_GROUP_SIZE,
    DEFAULT_GROUPS,
    MAX_K,
    MMR_CANDIDATES_FACTOR,
)
from shardvec.contract.types import SearchResult, ShardSearch
from shardvec.v1 import shard_pb2


@dataclass(frozen=True)
class GroupBy:
    """The best `groups` groups by metadata `field`, each with its best `group_size` hits."""

    field: str
    groups: int = DEFAULT_GROUPS
    group_size: int = DEFAULT_GROUP_SIZE

    @property
    def hits(self) -> int:
        return self.groups * self.group_size


@dataclass(frozen=True)
class Diversity:
    """Maximal marginal relevance: `k` picks out of the best `candidates`, trading relevance
    for novelty by `diversity` (lambda: 1 is plain relevance order, 0 novelty alone)."""

    diversity: float
    candidates: int


def group_key(value: object) -> str | None:
    """A group value as canonical JSON (None: not a group: missing, null, list, object)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        number = float(value)
        if not math.isfinite(number):
            return None
        if number.is_integer() and abs(number) < 2**53:
            return str(int(number))
        return repr(number)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return None


def group_value(key: str) -> Scalar:
    """The value of a group key (group_key's inverse, numbers as int when whole)."""
    try:
        value = json.loads(key)
    except ValueError:
        value = None
    if isinstance(value, (list, dict)) or value is None or group_key(value) != key:
        raise InvalidArgument(f"group_by: {key!r} is not a group value (canonical JSON)")
    out: Scalar = value
    return out


def group_by_from_request(request: Any, max_k: int = MAX_K) -> GroupBy | None:
    """A SearchRequest's group-by, checked (None without group_by): a metadata key, groups
    and group_size >= 1 (unset: the defaults) with groups * group_size <= the k cap, and k
    unset or equal to groups * group_size. INVALID_ARGUMENT naming the field."""
    if not request.group_by:
        if request.HasField("groups") or request.HasField("group_size"):
            raise InvalidArgument("group_by: groups and group_size need a group_by field")
        return None
    field = check_field_name(request.group_by, "group_by")
    groups = int(request.groups) if request.HasField("groups") else DEFAULT_GROUPS
    size = int(request.group_size) if request.HasField("group_size") else DEFAULT_GROUP_SIZE
    return check_group_by(field, groups, size, int(request.k), max_k)


def check_group_by(field: str, groups: int, group_size: int, k: int, max_k: int) -> GroupBy:
    check_field_name(field, "group_by")
    if groups < 1:
        raise InvalidArgument(f"groups: must be >= 1, got {groups}")
    if group_size < 1:
        raise InvalidArgument(f"group_size: must be >= 1, got {group_size}")
    if groups * group_size > max_k:
        raise InvalidArgument(
            f"groups: groups x group_size = {groups} x {group_size} = {groups * group_size} is "
            f"over the k cap {max_k}"
        )
    if k and k != groups * group_size:
        raise InvalidArgument(
            f"k: a grouped search returns groups x group_size hits; give k 0 or "
            f"{groups * group_size}, got {k}"
        )
    return GroupBy(field, groups, group_size)


def diversity_from_request(request: Any, k: int, max_k: int = MAX_K) -> Diversity | None:
    """A SearchRequest's diversity, checked (None without one)."""
    if not request.HasField("diversity"):
        if request.candidates:
            raise InvalidArgument("candidates: needs diversity (the MMR trade-off, in [0, 1])")
        return None
    return check_diversity(float(request.diversity), int(request.candidates), k, max_k)


def check_diversity(diversity: float, candidates: int, k: int, max_k: int) -> Diversity:
    """diversity in [0, 1]; candidates 0 (min(4 k, the k cap)) or in [k, the k cap]."""
    if not (math.isfinite(diversity) and 0.0 <= diversity <= 1.0):
        raise InvalidArgument(f"diversity: must be in [0, 1], got {diversity}")
    if candidates == 0:
        candidates = max(k, min(MMR_CANDIDATES_FACTOR * k, max_k))
    if candidates < k:
        raise InvalidArgument(f"candidates: must be at least k = {k}, got {candidates}")
    if candidates > max_k:
        raise InvalidArgument(f"candidates: must be at most the k cap {max_k}, got {candidates}")
    return Diversity(diversity, candidates)


# The shard's grouped search.


@dataclass(frozen=True, eq=False)
class ShardGroupSearch:
    """A grouped search as one shard receives it: `search` (its k unused), the field, and,
    when not empty, the only group keys (JSON) to consider."""

    search: ShardSearch
    group: GroupBy
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class GroupResult:
    """A shard's grouped hits, per query in rank order: its best groups' hits and every hit
    of its ranking's first part whatever the group (shard/groups.py); each hit's group key
    ((nq, width) object, "" for padding); `bounds` ((nq,) float32): no hit of the shard left
    out of the row scores better (NaN: none was left out); `field_known`: some row here
    holds or held the field."""

    hits: SearchResult
    keys: np.ndarray
    field_known: bool
    bounds: np.ndarray


def group_search_to_proto(s: ShardGroupSearch) -> shard_pb2.ShardGroupSearchRequest:
    req = shard_pb2.ShardGroupSearchRequest(
        field=s.group.field, groups=s.group.groups, group_size=s.group.group_size,
        values_json=list(s.values),
    )  # fmt: skip
    req.search.CopyFrom(shard_search_to_proto(s.search))
    return req


def group_search_from_proto(req: Any, dim: int) -> ShardGroupSearch:
    """A ShardGroupSearchRequest from the trusted coordinator."""
    s = req.search
    search = ShardSearch(
        queries=vectors_from_proto(s.queries, dim, field="queries"),
        k=max(1, int(req.groups) * int(req.group_size)),
        exact=s.exact,
        ef=int(s.ef) or None,
        where=filter_from_proto(s.filter, trusted=True) if s.HasField("filter") else None,
        min_score=s.min_score if s.HasField("min_score") else None,
        max_distance=s.max_distance if s.HasField("max_distance") else None,
        include_metadata=s.include_metadata,
        include_vectors=s.include_vectors,
        include_documents=s.include_documents,
        where_document=(where_document_from_proto(s.where_document, trusted=True)
                        if s.HasField("where_document") else None),
        buckets=decode_buckets(s.buckets),
    )
    group = GroupBy(req.field, int(req.groups), int(req.group_size))
    return ShardGroupSearch(search, group, tuple(req.values_json))


def group_result_to_proto(result: GroupResult) -> shard_pb2.ShardGroupSearchResponse:
    h = result.hits
    resp = shard_pb2.ShardGroupSearchResponse(field_known=result.field_known)
    resp.hits.CopyFrom(search_result_to_proto(h.ids, h.scores, h.metadata, h.vectors,
                                              h.documents))  # fmt: skip
    resp.group_keys.extend(result.keys.ravel().tolist())
    resp.bounds.extend(result.bounds.tolist())
    return resp


def group_result_from_proto(
    resp: shard_pb2.ShardGroupSearchResponse, nq: int, dim: int
) -> GroupResult:
    hits = shard_hits_from_proto(resp.hits, nq, dim)
    keys = np.array(resp.group_keys, dtype=object).reshape(hits.ids.shape)
    bounds = np.array(resp.bounds, dtype=np.float32)
    if bounds.shape != (nq,):
        raise InvalidArgument(f"group search: {len(bounds)} bounds for {nq} queries")
    return GroupResult(hits, keys, bool(resp.field_known), bounds)
