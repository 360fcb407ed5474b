"""Stable hash partitioning: id -> virtual bucket -> shard.

blake2b of the UTF-8 id picks one of NUM_BUCKETS buckets (shardvec.contract.buckets, shared
with the shards, which store each row's bucket for the scroll order), and buckets map to shards
in contiguous ranges. The hash is stable across processes and versions (never Python's salted
`hash()`), and a later resharding can move whole buckets instead of rehashing every id.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from shardvec.contract.buckets import NUM_BUCKETS, bucket_of, slice_buckets, slice_of_bucket

__all__ = ["NUM_BUCKETS", "bucket_of", "partition", "shard_buckets", "shard_of", "shard_of_bucket"]


def shard_of_bucket(bucket: int, shards: int) -> int:
    return slice_of_bucket(bucket, shards)


def shard_buckets(shard: int, shards: int) -> tuple[int, int]:
    """The bucket range [start, end) shard `shard` of `shards` owns."""
    return slice_buckets(shard, shards)


def shard_of(id_: str, shards: int) -> int:
    return shard_of_bucket(bucket_of(id_), shards)


def partition(ids: Sequence[str], shards: int) -> list[np.ndarray]:
    """Row indices of `ids` for each shard (shard s gets rows parts[s], in input order)."""
    if shards == 1:
        return [np.arange(len(ids))]
    owner = np.fromiter((shard_of(i, shards) for i in ids), dtype=np.int64, count=len(ids))
    order = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[order], np.arange(shards + 1))
    return [order[bounds[s] : bounds[s + 1]] for s in range(shards)]
