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
import threading
import time

from shardvec.contract.errors import DataLoss, ShardvecError
from shardvec.contract.limits import DEFAULT_SCRUB_ROWS_PER_S
from shardvec.shard.engine import ShardEngine

log = logging.getLogger(__name__)

STEP_ROWS = 200
PASS_PAUSE_S = 5.0  # rest between two full passes


class Scrubber:
    """Checks the engine's rows at `rows_per_s` (0: never) until `stop()`."""

    def __init__(self, engine: ShardEngine, rows_per_s: int = DEFAULT_SCRUB_ROWS_PER_S) -> None:
        if rows_per_s < 0:
            raise ValueError(f"rows_per_s must be >= 0, got {rows_per_s}")
        self.engine = engine
        self.rows_per_s = rows_per_s
        self.checked = 0  # rows checked since start
        self.passes = 0  # full passes finished
        self.found: str | None = None  # the damage it found
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.rows_per_s and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="shardvec-scrub", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        step = min(STEP_ROWS, self.rows_per_s)
        after = ""
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                n, last = self.engine.verify_rows(after, step)
            except DataLoss as exc:
                self.found = exc.message
                log.error("scrub of %s found damage: %s", self.engine.directory, exc.message)
                return
            except ShardvecError:  # closed or broken: nothing left to scrub
                return
            self.checked += n
            if last is None:
                self.passes += 1
                after = ""
                self._stop.wait(PASS_PAUSE_S)
            else:
                after = last
            self._stop.wait(max(0.0, n / self.rows_per_s - (time.monotonic() - began)))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
