"""A small ring buffer of a collection's recent query vectors, which the recall tuner
(coordinator/queries/recall_tuner.py) samples: recorded on the search path, so it keeps a few
rows of each call and copies nothing else."""

from __future__ import annotations

import numpy as np

RECENT_QUERIES = 64  # the most recent queries held per collection
ROWS_PER_CALL = 4  # rows of one search call kept (a batch of 1,000 queries keeps 4)


class RecentQueries:
    """The last `capacity` query vectors recorded, oldest overwritten first."""

    def __init__(self, capacity: int = RECENT_QUERIES, per_call: int = ROWS_PER_CALL) -> None:
        self.capacity = capacity
        self.per_call = per_call
        self._rows: np.ndarray | None = None
        self._next = 0
        self._held = 0
        self.recorded = 0  # rows recorded since start
        self.calls = 0  # calls recorded from since start

    def record(self, queries: np.ndarray) -> None:
        """Keep up to `per_call` rows of a search's queries (spread over the batch)."""
        n = int(queries.shape[0])
        if not n or not self.capacity:
            return
        if self._rows is None or self._rows.shape[1] != queries.shape[1]:
            self._rows = np.zeros((self.capacity, queries.shape[1]), dtype=np.float32)
            self._next = self._held = 0
        # Rows spread over the batch, from an offset that moves on with every call, so a
        # batch sent again (a benchmark, a dashboard's fixed queries) adds other rows of it.
        step = max(1, n // self.per_call)
        offset = self.calls % step
        self.calls += 1
        for row in queries[offset::step][: self.per_call]:
            self._rows[self._next] = row
            self._next = (self._next + 1) % self.capacity
            self._held = min(self._held + 1, self.capacity)
            self.recorded += 1

    def snapshot(self) -> np.ndarray:
        """A copy of the rows held (0 rows when none)."""
        if self._rows is None or not self._held:
            return np.empty((0, 0), dtype=np.float32)
        return self._rows[: self._held].copy()
