"""Turns on a node's CPUs: the replicas of one machine search large batches one at a time.

A large batch search is CPU-bound in hnswlib. Run by every replica of a node at once, S
processes share the node's cores: the OS time-slices them, each walks its own graph through
caches the others keep evicting, and the node spends more CPU per query than one process
searching the same indexes in turn with all the cores. Measured on the 2-core machine with
the four 25k-row shard indexes of the shared 100k x 384 set (1,000 queries, ef 32): all four
at once with one thread each used 0.47 ms of CPU per query, one at a time with two threads
each 0.40 ms, and the batch finished 1.2 to 1.3x sooner.

So a replica holds this lock (an exclusive `flock` on one file per Ray node in the machine's
temp directory, shared by every replica process of the node) while it searches a chunk of a large
batch, with every core of the node (`search_threads`). Everything else (decoding the
request, building the response, the transfers) runs outside the lock, so one replica's
search overlaps the others' wire work. Small searches (single queries, micro-batches) never
take it: for them the per-call overhead is the cost, and replicas side by side hide it. The
kernel drops a dead process's lock, so a replica killed mid-search holds up nobody.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def default_lock_path(node_id: str = "") -> Path:
    """The lock file of Ray node `node_id` on this machine: one per node, so the nodes of a
    simulated multi-node cluster on one machine (each with its own CPU share) do not queue on
    each other."""
    name = f"shardvec-search-{os.getuid()}-{node_id or 'local'}.lock"
    return Path(tempfile.gettempdir()) / name


class NodeSearchLock:
    """An exclusive lock over every process of this machine that opens the same file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_lock_path()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        # flock belongs to the open file: threads of one process must queue before it
        self._local = threading.Lock()

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self._local:
            fcntl.flock(self._fd, fcntl.LOCK_EX)  # blocks without the GIL
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)
