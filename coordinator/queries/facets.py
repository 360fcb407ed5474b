"""Facets: the most frequent values of a metadata field among a collection's rows matching the
filters, with exact counts.

One fan-out over one read view (coordinator/queries/read_view.py): every shard counts every
value over its rows passing the filters (shard/facets.py), masked to the buckets the view
gives it, so a row a layout change has copied is counted once, at its owner, exactly as Count
counts it. The coordinator sums the counts value by value and ranks the sums
(shardvec.contract.facets): each row is counted on exactly one shard, so each sum is the
value's count over the whole collection, and the top `limit` of exact sums is exact. Each
shard sends all its values (not its own top few, which could miss a value frequent overall
but never first on one shard).
"""

from __future__ import annotations

import numpy as np

from shardvec.contract.errors import InvalidArgument
from shardvec.contract.facets import FacetCounts, FacetValue, merge_counts, top_values
from shardvec.contract.filters import DocFilter, Filter
from shardvec.contract.shard_api import ShardLike
from shardvec.coordinator.queries.reads import CollectionReads


async def facet(
    col: CollectionReads,
    field: str,
    where: Filter | None,
    where_document: DocFilter | None,
    limit: int,
    deadline: float,
) -> list[tuple[FacetValue, int]]:
    """The `limit` most frequent values of `field` with their counts (module docstring).
    INVALID_ARGUMENT naming `field` when no row of any shard holds or held the key."""

    async def call(shard: ShardLike, timeout: float, buckets: np.ndarray | None) -> FacetCounts:
        return await shard.facet(field, where, timeout, where_document, buckets)

    async with col.views.read() as view:
        parts = await view.fan_out(call, deadline)
    if not any(p.field_known for p in parts):
        raise InvalidArgument(f"field: no row of collection {col.spec.name!r} holds the "
                              f"metadata key {field!r}")  # fmt: skip
    return top_values(merge_counts(parts), limit)
