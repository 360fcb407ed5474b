"""The background sweep of one replica: expired rows removed for good at a bounded rate.

Reads hide an expired row from the moment it expires (shard/slots.py `visible`), so the sweep
is not needed for correctness; it gives the space back. A daemon thread asks the engine to
remove up to `STEP_ROWS` expired rows a step (ShardEngine.sweep: store row to a tombstone
under its own seq, FTS5 row, index label, slot and filter columns, in one write under the
write mutex), sleeping between steps so it removes at most `rows_per_s` rows a second, and
resting `IDLE_S` when there is nothing to remove. Every replica sweeps its own rows: the
absolute expiry is the same on all of them, so they reach the same state without a seq of
their own (docs/design-notes.md, "Expiry").
"""

from __future__ import annotations

import logging
import threading
import time

from shardvec.contract.errors import DataLoss, ShardvecError
from shardvec.contract.limits import DEFAULT_SWEEP_ROWS_PER_S
from shardvec.shard.engine import ShardEngine

log = logging.getLogger(__name__)

STEP_ROWS = 256
IDLE_S = 1.0  # rest when nothing has expired


class Sweeper:
    """Removes the engine's expired rows at `rows_per_s` (0: never) until `stop()`."""

    def __init__(self, engine: ShardEngine, rows_per_s: int = DEFAULT_SWEEP_ROWS_PER_S) -> None:
        if rows_per_s < 0:
            raise ValueError(f"rows_per_s must be >= 0, got {rows_per_s}")
        self.engine = engine
        self.rows_per_s = rows_per_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.rows_per_s and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="shardvec-sweep", daemon=True)
            self._thread.start()

    def step(self) -> int:
        """One step: up to min(STEP_ROWS, rows_per_s) expired rows removed; how many."""
        return self.engine.sweep(max(1, min(STEP_ROWS, self.rows_per_s)))

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                n = self.step()
            except DataLoss as exc:
                log.error("sweep of %s stopped: %s", self.engine.directory, exc.message)
                return
            except ShardvecError:  # closed or broken: nothing left to sweep
                return
            if not n:
                self._stop.wait(IDLE_S)
                continue
            self._stop.wait(max(0.0, n / self.rows_per_s - (time.monotonic() - began)))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
