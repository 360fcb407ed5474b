"""Stable hash partitioning: id -> virtual bucket -> shard.

blake2b of the UTF-8 id picks one of NUM_BUCKETS buckets, and buckets map to shards in
contiguous ranges. The hash is stable across processes and versions (never Python's salted
`hash()`), and a later resharding can move whole buckets instead of rehashing every id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

NUM_BUCKETS = 1024


def bucket_of(id_: str) -> int:
    digest = hashlib.blake2b(id_.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % NUM_BUCKETS


def shard_of_bucket(bucket: int, shards: int) -> int:
    return bucket * shards // NUM_BUCKETS


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
