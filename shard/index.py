"""The hnswlib index of one replica over integer slots, growing in chunks.

Labels are the engine's dense integer slots. A freed slot is reused by calling `add_items` on
its (deleted) label: hnswlib 0.8.0 then unmarks it and updates the point in place. The index
is created with `allow_replace_deleted=False`; `replace_deleted=True` corrupts label lookup
when labels are reused.

Thread safety: hnswlib's `add_items`/`mark_deleted` are not safe alongside `knn_query`, and
`resize_index` is safe with nothing. Callers hold `index.lock`: the read side for `knn`,
`labels`, `vectors` and `save`; the write side for `add`, `mark_deleted` and
`ensure_capacity`. The lock is held by the caller (not taken inside) so one critical section
can cover the index and the engine's own slot tables together.

Search breadth: hnswlib searches with `max(ef, k)` and `ef` is index-wide state, so the index
keeps `ef = 1` and a search for k results at breadth ef asks for `max(k, ef)` results and keeps
the best k. That gives the same candidates as `set_ef(ef)` without mutating shared state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import hnswlib
import numpy as np
import numpy.typing as npt

from shardvec.contract.settings import IndexSettings
from shardvec.shard.rwlock import RWLock

log = logging.getLogger(__name__)

GROWTH_MIN = 1024
SPACES = {"cosine": "cosine", "dot": "ip", "euclidean": "l2"}

Labels = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float32]


class HnswIndex:
    """An hnswlib index over integer slots, growing in chunks; see the module docstring."""

    def __init__(self, settings: IndexSettings, raw: hnswlib.Index | None = None) -> None:
        self.settings = settings
        self.lock = RWLock()
        if raw is None:
            raw = hnswlib.Index(space=SPACES[settings.metric], dim=settings.dim)
            raw.init_index(
                max_elements=GROWTH_MIN,
                ef_construction=settings.ef_construction,
                M=settings.m,
                allow_replace_deleted=False,
            )
        raw.set_ef(1)
        self._raw = raw

    @classmethod
    def load(cls, settings: IndexSettings, path: Path, max_elements: int) -> HnswIndex:
        """An index read from an hnswlib file, with room for `max_elements` labels (and at
        least GROWTH_MIN). Raises RuntimeError or MemoryError on an unreadable file."""
        raw = hnswlib.Index(space=SPACES[settings.metric], dim=settings.dim)
        raw.load_index(str(path), max_elements=max(max_elements, GROWTH_MIN))
        return cls(settings, raw)

    @property
    def capacity(self) -> int:
        return int(self._raw.max_elements)

    @property
    def element_count(self) -> int:
        """Labels held, deleted ones included."""
        return int(self._raw.element_count)

    def nbytes(self) -> int:
        """Size of the index when serialised, about what it holds in memory."""
        return int(self._raw.index_file_size())

    def ensure_capacity(self, needed: int) -> None:
        """Grow so that `needed` labels fit: by max(1024, 50%) steps. Write side."""
        assert self.lock.write_held()
        cap = self.capacity
        if needed <= cap:
            return
        new = max(needed, cap + max(GROWTH_MIN, cap // 2))
        log.debug("resizing index from %d to %d elements", cap, new)
        self._raw.resize_index(new)

    def add(self, vectors: Floats, slots: Labels, num_threads: int = 1) -> None:
        """Insert or overwrite points at `slots` (a deleted label is revived). Write side."""
        assert self.lock.write_held()
        if len(slots):
            self.ensure_capacity(int(slots.max()) + 1)
            self._raw.add_items(vectors, slots, num_threads=num_threads)

    def mark_deleted(self, slots: Labels) -> int:
        """Hide `slots` from search; labels already deleted or never added are ignored.
        Returns how many labels this call hid. Write side."""
        assert self.lock.write_held()
        hidden = 0
        for slot in slots.tolist():
            try:
                self._raw.mark_deleted(slot)
            except RuntimeError:  # already deleted, or never added
                continue
            hidden += 1
        return hidden

    def labels(self) -> Labels:
        """Every label the index holds, deleted ones included. Read side."""
        assert self.lock.read_held()
        return np.asarray(self._raw.get_ids_list(), dtype=np.int64)

    def vectors(self, slots: Labels) -> Floats:
        """The float32 vectors hnswlib holds at `slots` (normalised under cosine; 11 us a row,
        the store by slot is 10x faster). Read side."""
        assert self.lock.read_held()
        if not len(slots):
            return np.zeros((0, self.settings.dim), dtype=np.float32)
        got = self._raw.get_items(np.asarray(slots, dtype=np.uint64), return_type="numpy")
        return np.asarray(got, dtype=np.float32).reshape(len(slots), self.settings.dim)

    def knn(
        self,
        queries: Floats,
        k: int,
        ef: int,
        num_threads: int = 1,
        filter: Callable[[int], bool] | None = None,
    ) -> tuple[Labels, Floats]:
        """Labels and hnswlib distances of the best max(k, ef) points per query, best first,
        from a search at breadth max(k, ef) (the extra candidates cost nothing). Read side.

        Raises RuntimeError when hnswlib finds fewer than max(k, ef) points for some query;
        callers cap `k` and `ef` at the number of eligible points and fall back to exact.
        """
        assert self.lock.read_held()
        labels, dist = self._raw.knn_query(
            queries, k=max(k, ef), num_threads=num_threads, filter=filter
        )
        return labels.astype(np.int64), np.asarray(dist, dtype=np.float32)

    def save(self, path: Path) -> None:
        """hnswlib `save_index` to `path`. Read side (searches may continue)."""
        assert self.lock.read_held()
        self._raw.save_index(str(path))
