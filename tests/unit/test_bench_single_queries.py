"""bench/query_clients.py `single_queries`: every mode gets measured, however slow its calls."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from shardvec.bench.query_clients import single_queries


class SlowBruteForce:
    """A collection answering by NumPy brute force, each call slower than the whole timed run
    (as the first calls of a smoke run were on a slow machine)."""

    def __init__(self, base: np.ndarray, delay_s: float) -> None:
        self.base, self.delay_s = base, delay_s

    def _top(self, queries: np.ndarray, k: int) -> list[list[str]]:
        time.sleep(self.delay_s)
        order = np.argsort(-(queries @ self.base.T), axis=1)[:, :k]
        return [[str(i) for i in row] for row in order]

    def search_ids(self, queries: np.ndarray, k: int, **_: Any) -> tuple[list[list[str]], None]:
        return self._top(queries, k), None

    def search(self, queries: np.ndarray, k: int, **_: Any) -> list[list[Any]]:
        class Hit:
            def __init__(self, id_: str) -> None:
                self.id, self.metadata = id_, None

        return [[Hit(i) for i in row] for row in self._top(queries, k)]


def test_each_mode_is_called_at_least_once_when_one_call_outlasts_the_run() -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((50, 8)).astype(np.float32)
    queries = base[:5] + 0.01
    gt = np.argsort(-(queries @ base.T), axis=1)[:, :10]
    col = SlowBruteForce(base, delay_s=0.05)
    got = single_queries(col, queries, gt, 10, ("ids", "metadata"), 0.01)  # type: ignore[arg-type]
    for mode in ("ids", "metadata"):
        assert got[mode].calls >= 1 and got[mode].errors == 0, (mode, got[mode])
        assert got[mode].recall == 1.0
