"""The plan of a layout change: its persisted record (`LayoutChange`), the bucket owners a new
shard count gets (`plan_owners`), and the copy steps that move them (`copy_steps`). Pure
functions of the layout, with no I/O; coordinator/changes/resharding.py runs the plan."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from shardvec.contract.buckets import NUM_BUCKETS
from shardvec.contract.errors import InvalidArgument
from shardvec.contract.limits import MAX_REPLICAS, MAX_SHARDS

COPY_ROWS = 1000  # about the rows one copy step moves (the buckets of a step, whole)

COPYING, CLEANUP, ABORTING = "copying", "cleanup", "aborting"


@dataclass
class LayoutChange:
    """The persisted state of one layout change (the registry's `changes` row, as JSON)."""

    phase: str
    old_owners: list[int]
    new_owners: list[int]
    from_shards: int
    target_shards: int
    target_replicas: int
    copied: list[int] = field(default_factory=list)  # buckets copied
    rows_copied: int = 0
    rows_total: int = 0
    started: float = field(default_factory=time.time)
    abort: bool = False

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LayoutChange:
        return cls(**json.loads(text))

    def moving(self) -> np.ndarray:
        return np.flatnonzero(np.asarray(self.old_owners) != np.asarray(self.new_owners))

    def receivers(self) -> frozenset[int]:
        """The shards of the old layout that receive copies of buckets (a shrink's)."""
        moving = self.moving()
        new = np.asarray(self.new_owners)[moving]
        return frozenset(int(s) for s in np.unique(new) if s < self.from_shards)

    def givers(self) -> frozenset[int]:
        """The shards of the new layout that hold rows of buckets they gave away, until the
        cleanup deletes them."""
        old = np.asarray(self.old_owners)[self.moving()]
        keep = min(self.from_shards, self.target_shards)
        return frozenset(int(s) for s in np.unique(old) if s < keep)


def plan_owners(owners: np.ndarray, shards: int) -> np.ndarray:
    """The bucket owners after changing to `shards` shards, moving as few buckets as the
    balance allows: every shard ends with NUM_BUCKETS // shards buckets or one more. A shard
    that stays keeps its lowest buckets up to its share; the buckets of removed shards and the
    surplus of the others go, in order, to the shards short of theirs."""
    if not 1 <= shards <= NUM_BUCKETS:
        raise InvalidArgument(f"shards must be in [1, {NUM_BUCKETS}], got {shards}")
    target = [NUM_BUCKETS // shards + (1 if s < NUM_BUCKETS % shards else 0)
              for s in range(shards)]
    new = np.full(NUM_BUCKETS, -1, dtype=np.int32)
    kept = [0] * shards
    for b in range(NUM_BUCKETS):
        s = int(owners[b])
        if s < shards and kept[s] < target[s]:
            new[b] = s
            kept[s] += 1
    short = [s for s in range(shards) for _ in range(target[s] - kept[s])]
    free = np.flatnonzero(new < 0)
    assert len(free) == len(short)
    new[free] = np.asarray(short, dtype=np.int32)
    return new


def copy_steps(
    change: LayoutChange, rows_per_bucket: Callable[[int], float]
) -> list[tuple[int, int, int, int]]:
    """The (old owner, new owner, first bucket, end bucket) steps of the buckets still to copy:
    runs of consecutive buckets with one old and one new owner, about COPY_ROWS rows each."""
    old, new = np.asarray(change.old_owners), np.asarray(change.new_owners)
    done = set(change.copied)
    steps: list[tuple[int, int, int, int]] = []
    b = 0
    while b < NUM_BUCKETS:
        if old[b] == new[b] or b in done:
            b += 1
            continue
        src, dst = int(old[b]), int(new[b])
        width = max(1, int(COPY_ROWS // max(1.0, rows_per_bucket(src))))
        end = b
        while (end < NUM_BUCKETS and end - b < width and old[end] == src and new[end] == dst
               and end not in done):
            end += 1
        steps.append((src, dst, b, end))
        b = end
    return steps


def runs(buckets: np.ndarray) -> list[tuple[int, int]]:
    """Sorted buckets as [start, end) runs of consecutive buckets."""
    out: list[tuple[int, int]] = []
    for b in sorted(int(x) for x in buckets):
        if out and out[-1][1] == b:
            out[-1] = (out[-1][0], b + 1)
        else:
            out.append((b, b + 1))
    return out


def check_counts(shards: int | None, replicas: int | None) -> None:
    """The counts a scale may ask for: the limits a collection is created under."""
    if shards is not None and not 1 <= shards <= MAX_SHARDS:
        raise InvalidArgument(f"shards: must be in [1, {MAX_SHARDS}] (MAX_SHARDS, as at "
                              f"creation), got {shards}")
    if replicas is not None and not 1 <= replicas <= MAX_REPLICAS:
        raise InvalidArgument(f"replicas: must be in [1, {MAX_REPLICAS}], got {replicas}")

