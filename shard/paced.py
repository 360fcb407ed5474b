"""A replica's background work paced to a rate: a daemon thread that runs steps of rows and
sleeps between them so it handles at most `rows_per_s` rows a second, until `stop()`. The
scrub (shard/scrub.py) and the expiry sweep (shard/sweep.py) are its two kinds."""

from __future__ import annotations

import threading
import time


class PacedWorker:
    """Runs `_step()` on a daemon thread named `name` at most `rows_per_s` rows a second
    (0: never runs)."""

    name = "shardvec-paced"

    def __init__(self, rows_per_s: int) -> None:
        if rows_per_s < 0:
            raise ValueError(f"rows_per_s must be >= 0, got {rows_per_s}")
        self.rows_per_s = rows_per_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _step(self) -> tuple[int, float] | None:
        """One step: the rows it handled and a rest before the next (besides the pacing);
        None ends the work."""
        raise NotImplementedError

    def start(self) -> None:
        if self.rows_per_s and self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            done = self._step()
            if done is None:
                return
            n, rest = done
            if rest:
                self._stop.wait(rest)
            self._stop.wait(max(0.0, n / self.rows_per_s - (time.monotonic() - began)))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
