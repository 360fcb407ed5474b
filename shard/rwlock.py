"""A readers-writer lock with writer preference, guarding a replica's index and tables.

The engine holds the read side to search and the write side to change the index, so searches
run alongside each other and a writer waits only for searches already running.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class RWLock:
    """A readers-writer lock with writer preference (waiting writers block new readers).

    Not reentrant: a thread must not take the read side twice while a writer may be waiting.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer: int | None = None
        self._writers_waiting = 0

    def acquire_read(self, timeout: float | None = None) -> bool:
        """Take the read side; with `timeout`, give up after that many seconds (False)."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._writer is None and not self._writers_waiting, timeout
            )
            if not ok:
                return False
            self._readers += 1
            return True

    def release_read(self) -> None:
        with self._cond:
            self._readers -= 1
            if self._readers == 0:
                self._cond.notify_all()

    def acquire_write(self) -> None:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer is not None or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = threading.get_ident()

    def release_write(self) -> None:
        with self._cond:
            self._writer = None
            self._cond.notify_all()

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        self.acquire_read()
        try:
            yield
        finally:
            self.release_read()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        self.acquire_write()
        try:
            yield
        finally:
            self.release_write()

    @contextlib.contextmanager
    def try_read(self, timeout: float) -> Iterator[bool]:
        """The read side if it can be had within `timeout` seconds: yields whether it was."""
        held = self.acquire_read(timeout)
        try:
            yield held
        finally:
            if held:
                self.release_read()

    def write_held(self) -> bool:
        """True when the calling thread holds the write side."""
        return self._writer == threading.get_ident()

    def read_held(self) -> bool:
        """True when some thread holds the read side or this thread holds the write side."""
        return self._readers > 0 or self.write_held()
