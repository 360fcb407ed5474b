"""The background scrub of one replica: every live row's checksum, checked at a bounded rate.

A daemon thread walks the store in id order, `STEP_ROWS` rows a step through its own SQLite
reader (WAL: a step never holds up a write or a search), sleeping between steps so it checks
at most `rows_per_s` rows a second, and starts over when it reaches the end. A row whose bytes
no longer match its checksum marks the engine damaged (ShardEngine.mark_damaged): every call
then answers DATA_LOSS, and the coordinator quarantines the replica and rebuilds it from a
live peer (coordinator/replicas/replica_set.py).
"""

from __future__ import annotations

import logging

from shardvec.contract.errors import DataLoss, ShardvecError
from shardvec.contract.limits import DEFAULT_SCRUB_ROWS_PER_S
from shardvec.shard.engine import ShardEngine
from shardvec.shard.paced import PacedWorker

log = logging.getLogger(__name__)

STEP_ROWS = 200
PASS_PAUSE_S = 5.0  # rest between two full passes


class Scrubber(PacedWorker):
    """Checks the engine's rows at `rows_per_s` (0: never) until `stop()`."""

    name = "shardvec-scrub"

    def __init__(self, engine: ShardEngine, rows_per_s: int = DEFAULT_SCRUB_ROWS_PER_S) -> None:
        super().__init__(rows_per_s)
        self.engine = engine
        self.checked = 0  # rows checked since start
        self.passes = 0  # full passes finished
        self.found: str | None = None  # the damage it found
        self._after = ""  # the last id checked of this pass

    def _step(self) -> tuple[int, float] | None:
        try:
            n, last = self.engine.verify_rows(self._after, min(STEP_ROWS, self.rows_per_s))
        except DataLoss as exc:
            self.found = exc.message
            log.error("scrub of %s found damage: %s", self.engine.directory, exc.message)
            return None
        except ShardvecError:  # closed or broken: nothing left to scrub
            return None
        self.checked += n
        if last is None:  # a pass ended: rest, then start over
            self.passes += 1
            self._after = ""
            return n, PASS_PAUSE_S
        self._after = last
        return n, 0.0
