"""A collection's layout: which shard owns each routing bucket, under a version.

Ids hash to one of NUM_BUCKETS buckets (shardvec.contract.buckets); the layout maps every
bucket to a shard. A new collection of S shards owns contiguous, near-equal bucket ranges
(shard s owns slice s of S). A resharding (coordinator/changes/resharding.py) moves whole buckets to
new owners and never rehashes an id, so after it the buckets of a shard need not be
contiguous. `version` grows by one at every switch of layout; it is persisted with the owners
in the registry and is what a reader holding an older copy is fenced by.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from shardvec.contract.buckets import NUM_BUCKETS, bucket_of, slice_buckets


def next_epoch(previous: int) -> int:
    """An epoch (a layout push's, coordinator/fronts/publish.py; an alias map's version,
    coordinator/aliases.py) greater than `previous`; microseconds of the clock when those are
    ahead, so a restarted coordinator (which starts from 0) still issues epochs no front has
    seen."""
    return max(previous + 1, time.time_ns() // 1000)


@dataclass(frozen=True, eq=False)
class Layout:
    version: int
    owners: np.ndarray  # int32[NUM_BUCKETS]: the shard of each bucket

    def __post_init__(self) -> None:
        if self.owners.shape != (NUM_BUCKETS,):
            raise ValueError(f"a layout maps {NUM_BUCKETS} buckets, got {self.owners.shape}")
        owned = np.unique(self.owners)
        if owned[0] != 0 or owned[-1] != len(owned) - 1:
            raise ValueError("a layout's shards must be 0..S-1, each owning a bucket")
        self.owners.setflags(write=False)

    @classmethod
    def initial(cls, shards: int) -> Layout:
        """Shard s of `shards` owns bucket slice s (contiguous, near-equal), version 1."""
        owners = np.empty(NUM_BUCKETS, dtype=np.int32)
        for s in range(shards):
            start, end = slice_buckets(s, shards)
            owners[start:end] = s
        return cls(1, owners)

    @property
    def shards(self) -> int:
        return int(self.owners.max()) + 1

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Layout)
            and self.version == other.version
            and bool(np.array_equal(self.owners, other.owners))
        )

    def __hash__(self) -> int:
        return hash((self.version, self.owners.tobytes()))

    def shard_of_bucket(self, bucket: int) -> int:
        return int(self.owners[bucket])

    def shard_of(self, id_: str) -> int:
        return int(self.owners[bucket_of(id_)])

    def buckets_of(self, shard: int) -> np.ndarray:
        """The buckets `shard` owns, ascending."""
        return np.flatnonzero(self.owners == shard)

    def run_end(self, bucket: int) -> int:
        """The end (exclusive) of the run of buckets from `bucket` with the same owner."""
        owner = self.owners[bucket]
        other = np.flatnonzero(self.owners[bucket:] != owner)
        return bucket + int(other[0]) if len(other) else NUM_BUCKETS

    def partition(self, ids: Sequence[str]) -> list[np.ndarray]:
        """Row indices of `ids` for each shard (shard s gets rows parts[s], in input order)."""
        shards = self.shards
        if shards == 1:
            return [np.arange(len(ids))]
        owner = self.owners[
            np.fromiter((bucket_of(i) for i in ids), dtype=np.int64, count=len(ids))
        ]
        order = np.argsort(owner, kind="stable")
        bounds = np.searchsorted(owner[order], np.arange(shards + 1))
        return [order[bounds[s] : bounds[s + 1]] for s in range(shards)]

    def to_json(self) -> str:
        return json.dumps({"version": self.version, "owners": self.owners.tolist()})

    @classmethod
    def from_json(cls, text: str) -> Layout:
        d = json.loads(text)
        return cls(int(d["version"]), np.asarray(d["owners"], dtype=np.int32))


@dataclass
class ChangeProgress:
    """A layout change in progress, as DescribeCollection and `shardvec status` show it."""

    kind: str  # "shards" or "replicas"
    phase: str
    target_shards: int
    target_replicas: int
    rows_total: int = 0  # about: the moving buckets' share of their owners' rows
    rows_copied: int = 0
    started: float = field(default_factory=time.time)  # unix seconds
    error: str = ""  # the last error the change is retrying after
