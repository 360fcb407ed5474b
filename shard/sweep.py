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

from shardvec.contract.errors import DataLoss, ShardvecError
from shardvec.contract.limits import DEFAULT_SWEEP_ROWS_PER_S
from shardvec.shard.engine import ShardEngine
from shardvec.shard.paced import PacedWorker

log = logging.getLogger(__name__)

STEP_ROWS = 256
IDLE_S = 1.0  # rest when nothing has expired


class Sweeper(PacedWorker):
    """Removes the engine's expired rows at `rows_per_s` (0: never) until `stop()`."""

    name = "shardvec-sweep"

    def __init__(self, engine: ShardEngine, rows_per_s: int = DEFAULT_SWEEP_ROWS_PER_S) -> None:
        super().__init__(rows_per_s)
        self.engine = engine

    def step(self) -> int:
        """One step: up to min(STEP_ROWS, rows_per_s) expired rows removed; how many."""
        return self.engine.sweep(max(1, min(STEP_ROWS, self.rows_per_s)))

    def _step(self) -> tuple[int, float] | None:
        try:
            n = self.step()
        except DataLoss as exc:
            log.error("sweep of %s stopped: %s", self.engine.directory, exc.message)
            return None
        except ShardvecError:  # closed or broken: nothing left to sweep
            return None
        return n, (0.0 if n else IDLE_S)
