"""The stable bucket hash of an id, shared by routing (coordinator) and scroll order (shard).

blake2b of the UTF-8 id picks one of NUM_BUCKETS buckets. The coordinator maps buckets to
shards (coordinator/layout.py); each shard stores every row's bucket so that it can page its
rows in (bucket, id) order, the collection-wide scroll order, which stays the same when a
later resharding moves whole buckets between shards. Stable across processes and versions
(never Python's salted `hash()`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from shardvec.contract.errors import InvalidArgument

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


BITMAP_BYTES = NUM_BUCKETS // 8


def encode_buckets(mask: npt.NDArray[np.bool_] | None) -> bytes:
    """A bool mask over the buckets as the wire's bitmap (bit b of byte b // 8, least
    significant first); None (every bucket) is empty bytes."""
    if mask is None:
        return b""
    if mask.shape != (NUM_BUCKETS,):
        raise ValueError(f"a bucket mask has {NUM_BUCKETS} entries, got {mask.shape}")
    return np.packbits(mask.astype(np.bool_), bitorder="little").tobytes()


def decode_buckets(data: bytes, field: str = "buckets") -> npt.NDArray[np.bool_] | None:
    """The bool mask of a wire bitmap (empty: None, every bucket); InvalidArgument for a
    bitmap of another size."""
    if not data:
        return None
    if len(data) != BITMAP_BYTES:
        raise InvalidArgument(f"{field}: a bucket bitmap has {BITMAP_BYTES} bytes, got {len(data)}")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
    return bits.astype(np.bool_)


def buckets_of(ids: Sequence[str]) -> npt.NDArray[np.int16]:
    """The bucket of each id, as an int16 array."""
    return np.fromiter((bucket_of(i) for i in ids), dtype=np.int16, count=len(ids))
