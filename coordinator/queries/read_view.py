"""The one read rule of a collection: every read kind fans out through a `ReadView`.

A view is what one read sees: the layout (its version and bucket owners), the shards to read
(the layout's), and the shards that may hold rows of buckets they do not own, `foreign`:

- while a layout change copies buckets into shards that are read (a shrink, or a growth that
  moves buckets between existing shards), the receiving shards hold copies of rows whose
  owner is still another shard;
- after the switch, until the cleanup has deleted them, the old owners still hold the rows of
  the buckets they gave away;
- after an abort, until the rollback has deleted them, the receivers still hold their copies.

The rule: **a shard answers only for the buckets the view's layout gives it.** A read sends a
foreign shard the bitmap of its buckets (`ReadView.buckets`, sent by `ReadView.fan_out`, the
one fan-out of searches, counts and keyword reads); the shard masks every other row out of
searches, counts, keyword statistics and keyword searches, so each row is seen once, at its
owner, in every phase, with no lock and no dedupe. Get by id and Scroll read each
bucket from its owner alone, so they need no mask. A query front builds its views from the
pushed layout with the same `foreign` set (coordinator/fronts/publish.py), so it reads by the
same rule.

`ReadViews` hands views out and retires them. A layout change publishes each new view before
it makes the step that needs it (`publish`), and waits for the reads of the views before it
(`drained`) before it deletes rows those views would read: so a read never waits for a layout
change, and a layout change waits only for reads in flight, never for a lock a read holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from shardvec.contract.shard_api import ShardLike
from shardvec.coordinator.layout import Layout
from shardvec.coordinator.replicas.replica_set import ReplicaSet

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class ReadView:
    """A collection as one read sees it (module docstring)."""

    layout: Layout
    sets: tuple[ReplicaSet, ...]  # sets[s]: the replicas of shard s of the layout
    foreign: frozenset[int] = frozenset()  # shards that may hold rows they do not own
    _masks: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def version(self) -> int:
        return self.layout.version

    @property
    def shards(self) -> int:
        return self.layout.shards

    def buckets(self, shard: int) -> np.ndarray | None:
        """The bucket mask `shard` answers for: None (every row it holds) unless it may hold
        rows of buckets it does not own."""
        if shard not in self.foreign:
            return None
        mask = self._masks.get(shard)
        if mask is None:
            mask = self._masks[shard] = self.layout.owners == shard
            mask.setflags(write=False)
        return mask

    async def fan_out(
        self,
        call: Callable[[ShardLike, float, np.ndarray | None], Awaitable[T]],
        deadline: float,
        timer: Callable[[int, float], None] | None = None,
    ) -> list[T]:
        """`call(replica, timeout, buckets)` on one replica of every shard of the view, in
        parallel, each shard given the bucket mask it answers for (`buckets`); results in
        shard order. `timer(shard, seconds)`: each shard's read time, failovers included."""

        async def one(shard: int) -> T:
            buckets = self.buckets(shard)

            async def bound(replica: ShardLike, timeout: float) -> T:
                return await call(replica, timeout, buckets)

            start = time.perf_counter()
            try:
                return await self.sets[shard].read(bound, deadline)
            finally:
                if timer is not None:
                    timer(shard, time.perf_counter() - start)

        return list(await asyncio.gather(*(one(s) for s in range(self.shards))))

    def owner_parts(self, ids: Sequence[str]) -> list[tuple[int, np.ndarray]]:
        """(shard, row indices of `ids`) for each shard owning some of them."""
        return [(s, rows) for s, rows in enumerate(self.layout.partition(ids)) if len(rows)]


class ReadViews:
    """The current view of a collection, and the views reads still hold.

    Lock order (the one place it is written): a read takes no lock at all; it holds its view
    for as long as it fans out. A layout change takes the shards' write locks (in shard
    order, as every write does) only to change where writes go, and waits for older views to
    drain (`drained`) holding none of them, so no read ever waits on a layout change's lock
    and no layout change waits on a read that waits on it."""

    def __init__(self, view: ReadView) -> None:
        self.current = view
        self._held: dict[int, int] = {}  # id(view) -> reads holding it
        self._views: dict[int, ReadView] = {}
        self._changed = asyncio.Event()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[ReadView]:
        """The current view, held until the block ends."""
        view = self.current
        key = id(view)
        self._views[key] = view
        self._held[key] = self._held.get(key, 0) + 1
        try:
            yield view
        finally:
            self._held[key] -= 1
            if not self._held[key]:
                del self._held[key]
                del self._views[key]
                self._changed.set()

    def publish(self, view: ReadView) -> None:
        """Reads from now on take `view`."""
        self.current = view

    def held(self) -> int:
        """Reads holding a view other than the current one."""
        current = id(self.current)
        return sum(n for key, n in self._held.items() if key != current)

    async def drained(self) -> None:
        """Wait until no read holds a view older than the current one."""
        while self.held():
            self._changed.clear()
            await self._changed.wait()
