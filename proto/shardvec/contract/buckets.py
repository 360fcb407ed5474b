"""The stable bucket hash of an id, shared by routing (coordinator) and scroll order (shard).

blake2b of the UTF-8 id picks one of NUM_BUCKETS buckets. The coordinator maps buckets to
shards (coordinator/routing.py); each shard stores every row's bucket so that it can page its
rows in (bucket, id) order, the collection-wide scroll order, which stays the same when a
later resharding moves whole buckets between shards. Stable across processes and versions
(never Python's salted `hash()`).
"""

from __future__ import annotations

import hashlib

NUM_BUCKETS = 1024


def bucket_of(id_: str) -> int:
    digest = hashlib.blake2b(id_.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % NUM_BUCKETS


def slice_of_bucket(bucket: int, slices: int) -> int:
    """Which of `slices` contiguous, near-equal bucket ranges holds `bucket` (shard s of S
    owns exactly slice s of S)."""
    return bucket * slices // NUM_BUCKETS


def slice_buckets(index: int, slices: int) -> tuple[int, int]:
    """The bucket range [start, end) of slice `index` of `slices` (see slice_of_bucket)."""
    start = -(-index * NUM_BUCKETS // slices)
    end = -(-(index + 1) * NUM_BUCKETS // slices)
    return start, end
