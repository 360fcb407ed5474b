"""Ids to the dense integer slots that label the index, planned per batch before any write,
and each live row's expiry: the one rule of what a read may see ("live now")."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from shardvec.contract.buckets import buckets_of
from shardvec.shard.id_map import IdMap
from shardvec.shard.index import Labels


@dataclass
class SlotPlan:
    """Slot changes of one batch, computed before anything is written."""

    up_slots: list[int]
    del_slots: list[int]
    free: list[int]
    n_slots: int


class SlotTable:
    """Ids to dense integer slots (the hnswlib labels) and back, with a free list.

    `id_to_slot` maps live ids to slots (shard/id_map.py: a hash table keyed by the strings of
    `slot_to_id`); `slot_to_id` ("" when free), `alive` and `bucket` (each live row's routing
    bucket, so a read can answer for the buckets its shard owns) are arrays over slots
    [0, n_slots) (with spare capacity). Changes are planned first (`plan`, no mutation), then
    applied (`apply`) once the batch is durable. The engine guards it with the index lock.

    Expiry: `_expires` holds each live row's absolute expiry (unix seconds, +inf: never) and
    `n_expiring` counts the live rows that have one. A row is visible while `clock()` is below
    its expiry: `visible()` is the mask every read starts from, `expired()` the rows awaiting
    the sweep. With no row expiring (or none due before `_earliest`), both cost nothing.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.id_to_slot = IdMap(lambda: self.slot_to_id)  # no Python object a row
        self.slot_to_id: npt.NDArray[np.object_] = np.full(0, "", dtype=object)
        self._alive: npt.NDArray[np.bool_] = np.zeros(0, dtype=np.bool_)
        self._bucket: npt.NDArray[np.int16] = np.zeros(0, dtype=np.int16)
        self._expires: npt.NDArray[np.float64] = np.zeros(0, dtype=np.float64)
        self.n_expiring = 0
        # No live row expires before this (a lower bound: stale values only cost a scan).
        self._earliest = math.inf
        self.clock = clock
        self.free: list[int] = []
        self.n_slots = 0

    def __len__(self) -> int:
        return len(self.id_to_slot)

    @property
    def alive(self) -> npt.NDArray[np.bool_]:
        """Bool over slots [0, n_slots): True where a live row sits (a view)."""
        return self._alive[: self.n_slots]

    @property
    def bucket(self) -> npt.NDArray[np.int16]:
        """int16 over slots [0, n_slots): each live row's routing bucket (a view)."""
        return self._bucket[: self.n_slots]

    def in_buckets(self, buckets: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        """Bool over slots: live rows whose bucket `buckets` marks."""
        return self.alive & buckets[self.bucket]

    # ------------------------------------------------------------------------- expiry

    @property
    def expires(self) -> npt.NDArray[np.float64]:
        """float64 over slots [0, n_slots): each live row's absolute expiry (+inf: never)."""
        return self._expires[: self.n_slots]

    def expired(self, now: float | None = None) -> npt.NDArray[np.bool_] | None:
        """Bool over slots: live rows whose expiry has passed at `now` (None: the clock);
        None when there are none, found without a scan when no row expires or none is due.
        The caller holds the index lock (either side)."""
        if not self.n_expiring:
            return None
        at = self.clock() if now is None else now
        if at < self._earliest:
            return None
        exp = self.expires <= at
        if not exp.any():
            self._earliest = float(self.expires.min()) if self.n_slots else math.inf
            return None
        return exp

    def visible(
        self, buckets: npt.NDArray[np.bool_] | None = None, now: float | None = None
    ) -> npt.NDArray[np.bool_]:
        """Bool over slots (a new array): the rows a read sees now: live, of `buckets` (None:
        every bucket), not expired. The one "live rows now" rule of every read."""
        mask = self.alive.copy() if buckets is None else self.in_buckets(buckets)
        exp = self.expired(now)
        if exp is not None:
            mask &= ~exp
        return mask

    def n_visible(self, now: float | None = None) -> int:
        """How many rows a read sees now (live and not expired)."""
        exp = self.expired(now)
        return len(self) - (int(exp.sum()) if exp is not None else 0)

    def set_expiry(self, slots: npt.NDArray[np.int64], expires_at: Sequence[float]) -> None:
        """Set the expiry of the live rows at `slots` (0.0: never)."""
        if not len(slots):
            return
        new = np.asarray(expires_at, dtype=np.float64)
        new = np.where(new > 0, new, np.inf)
        before = int(np.isfinite(self._expires[slots]).sum())
        self.n_expiring += int(np.isfinite(new).sum()) - before
        self._expires[slots] = new
        if np.isfinite(new).any():
            self._earliest = min(self._earliest, float(new.min()))

    def reserve(self, n: int) -> None:
        """Grow the arrays geometrically so slots below `n` exist; n_slots rises to n."""
        cap = len(self._alive)
        if n > cap:
            new = max(n, 2 * cap, 1024)
            ids = np.full(new, "", dtype=object)
            ids[:cap] = self.slot_to_id
            alive = np.zeros(new, dtype=np.bool_)
            alive[:cap] = self._alive
            bucket = np.zeros(new, dtype=np.int16)
            bucket[:cap] = self._bucket
            expires = np.full(new, np.inf, dtype=np.float64)
            expires[:cap] = self._expires
            self.slot_to_id, self._alive, self._bucket = ids, alive, bucket
            self._expires = expires
        self.n_slots = max(self.n_slots, n)

    def load(
        self,
        ids: list[str],
        slots: Labels,
        buckets: npt.NDArray[np.int16],
        expires_at: Sequence[float] | None = None,
    ) -> None:
        """Recovery: mark `ids` live at `slots`, in routing `buckets`, with their expiries
        (0.0 or None: never) as the store holds them; call `rebuild_free` when done."""
        if len(slots):
            self.reserve(int(slots.max()) + 1)
        self.slot_to_id[slots] = np.array(ids, dtype=object)
        self._alive[slots] = True
        self._bucket[slots] = buckets
        if expires_at is not None:
            self.set_expiry(np.asarray(slots, dtype=np.int64), expires_at)
        self.id_to_slot.update(zip(ids, slots.tolist(), strict=True))

    def rebuild_free(self) -> None:
        self.free = np.flatnonzero(~self.alive)[::-1].tolist()

    def plan(self, up_ids: Sequence[str], del_ids: Sequence[str]) -> SlotPlan:
        """Deletions free their slots first, kept ids keep theirs, new ids take free slots
        (most recently freed first) and then fresh ones past n_slots."""
        del_slots = [self.id_to_slot[i] for i in del_ids if i in self.id_to_slot]
        free = self.free + del_slots[::-1]
        n_slots = self.n_slots
        up_slots: list[int] = []
        for rid in up_ids:
            slot = self.id_to_slot.get(rid)
            if slot is None:
                if free:
                    slot = free.pop()
                else:
                    slot, n_slots = n_slots, n_slots + 1
            up_slots.append(slot)
        return SlotPlan(up_slots, del_slots, free, n_slots)

    def apply(
        self, plan: SlotPlan, up_ids: Sequence[str], expires_at: Sequence[float] | None = None
    ) -> None:
        """Apply a planned batch; the upserted rows take `expires_at` (one per row, 0.0:
        never; None: none expires)."""
        if plan.del_slots:
            dels = np.asarray(plan.del_slots, dtype=np.int64)
            for rid in self.slot_to_id[dels].tolist():
                del self.id_to_slot[rid]
            self.slot_to_id[dels] = ""
            self._alive[dels] = False
            self.set_expiry(dels, [0.0] * len(dels))
        self.reserve(plan.n_slots)
        if up_ids:
            ups = np.asarray(plan.up_slots, dtype=np.int64)
            self.slot_to_id[ups] = np.array(up_ids, dtype=object)
            self._alive[ups] = True
            self._bucket[ups] = buckets_of(up_ids)
            if expires_at is not None or self.n_expiring:
                self.set_expiry(ups, expires_at if expires_at is not None else [0.0] * len(ups))
            self.id_to_slot.update(zip(up_ids, plan.up_slots, strict=True))
        self.free = plan.free
