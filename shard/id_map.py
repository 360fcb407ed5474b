"""Ids to slots without a Python object per row: an open-addressing hash table of 4-byte
slots and 4-byte hash tags, whose keys are the slot table's own id strings.

A `dict[str, int]` costs about 59 B a row beyond the id strings (31 for its entry, 28 for an
int object per slot above 256, at 250k rows); this table costs 8 B a bucket, 25 to 70 % full:
11 to 32 B a row (17 at 250k). A bucket holds a slot (EMPTY, GONE for a removed key, or the
slot) and the low 32 bits of the key's hash; a key is found by linear probing from its hash,
and a bucket matches when its tag equals the key's and the slot table's id at that slot is the
key (so the table stores no key). The caller keeps `slot_to_id` in step: a key is removed
while its slot still holds it, and added once its slot holds it (shard/slots.py
`SlotTable.apply`).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import numpy.typing as npt

EMPTY = -1
GONE = -2
MIN_BUCKETS = 1024
MAX_LOAD = 0.7
TAG_MASK = 0xFFFFFFFF


class IdMap:
    """Live id -> slot, keyed by the id strings in `ids()` (the slot table's `slot_to_id`)."""

    def __init__(self, ids: Callable[[], npt.NDArray[np.object_]]) -> None:
        self._ids = ids
        self._slots = array("i", [EMPTY]) * MIN_BUCKETS
        self._tags = array("I", [0]) * MIN_BUCKETS
        self._mask = MIN_BUCKETS - 1
        self._len = 0
        self._used = 0  # buckets not EMPTY (live and GONE)

    def __len__(self) -> int:
        return self._len

    def _find(self, key: str) -> tuple[int, int]:
        """(bucket holding `key` or -1, the first free bucket on its probe path)."""
        h = hash(key)
        tag = h & TAG_MASK
        mask, slots, tags = self._mask, self._slots, self._tags
        ids = self._ids()
        i = h & mask
        free = -1
        while True:
            s = slots[i]
            if s == EMPTY:
                return -1, i if free < 0 else free
            if s == GONE:
                if free < 0:
                    free = i
            elif tags[i] == tag and ids[s] == key:
                return i, free
            i = (i + 1) & mask

    def get(self, key: str, default: int | None = None) -> int | None:
        at, _ = self._find(key)
        return self._slots[at] if at >= 0 else default

    def __getitem__(self, key: str) -> int:
        at, _ = self._find(key)
        if at < 0:
            raise KeyError(key)
        return self._slots[at]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._find(key)[0] >= 0

    def __iter__(self) -> Iterator[str]:
        ids = self._ids()
        for s in self._slots:
            if s >= 0:
                yield ids[s]

    def update(self, pairs: Iterable[tuple[str, int]]) -> None:
        """Add or move each (key, slot); the slot table holds `key` at `slot` already."""
        for key, slot in pairs:
            at, free = self._find(key)
            if at >= 0:
                self._slots[at] = slot
                continue
            if self._slots[free] == EMPTY:
                self._used += 1
            self._slots[free] = slot
            self._tags[free] = hash(key) & TAG_MASK
            self._len += 1
            if self._used > MAX_LOAD * len(self._slots):
                self._rehash()

    def __delitem__(self, key: str) -> None:
        at, _ = self._find(key)
        if at < 0:
            raise KeyError(key)
        self._slots[at] = GONE
        self._len -= 1

    def _rehash(self) -> None:
        """Into the smallest table at most half full (GONE buckets dropped)."""
        n = MIN_BUCKETS
        while n < 2 * self._len:
            n *= 2
        old_slots, old_tags = self._slots, self._tags
        self._slots = array("i", [EMPTY]) * n
        self._tags = array("I", [0]) * n
        self._mask = n - 1
        slots, tags, mask = self._slots, self._tags, self._mask
        ids = self._ids()
        for s, tag in zip(old_slots, old_tags, strict=True):
            if s < 0:
                continue
            i = hash(ids[s]) & mask
            while slots[i] != EMPTY:
                i = (i + 1) & mask
            slots[i], tags[i] = s, tag
        self._used = self._len

    def nbytes(self) -> int:
        return len(self._slots) * 8
