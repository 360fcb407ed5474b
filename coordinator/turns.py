"""Node turns: the replicas of one node search large batches one after another.

A large batch search is CPU-bound in hnswlib. Run on every shard of a node at once, S replica
processes share the node's cores: the OS time-slices them, each walks its own graph through a
cache the others keep evicting, and the node spends more CPU per query than one process
searching the same indexes in turn. Measured on the 2-core machine with the four 25k-row
shard indexes of the shared 100k x 384 set (1,000 queries, ef 32, `bench/query_turns.py`):
all four at once with one thread each used 0.47 ms of CPU per query, one at a time with two
threads each 0.40 ms, and the batch finished 1.2 to 1.3x sooner.

So a search of at least `node_turn_rows` queries takes its node's turn before it calls a
replica (a FIFO lock per node, shared by every collection), and each replica searches with
all of its node's cores (`search_threads` 0). Nodes still search in parallel with each other,
and smaller searches (single queries, micro-batches) never wait: for them the per-call
overhead, not the cores, is the cost, and running the shards side by side hides it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from shard.errors import DeadlineExceeded


class TurnTimeout(DeadlineExceeded):
    """The request's deadline passed while it waited for a node's turn (the replica is fine)."""


class NodeTurns:
    """One FIFO lock per node id."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    @asynccontextmanager
    async def turn(self, node_id: str, deadline: float) -> AsyncIterator[None]:
        """Hold `node_id`'s turn; raises TurnTimeout when `deadline` (monotonic) passes first."""
        lock = self._locks.setdefault(node_id, asyncio.Lock())
        try:
            # asyncio.timeout_at, not wait_for: a cancelled Lock.acquire hands the lock on
            async with asyncio.timeout_at(deadline):  # the loop's clock is time.monotonic
                await lock.acquire()
        except TimeoutError:
            raise TurnTimeout(f"deadline exceeded waiting for node {node_id[:12]}'s turn") from None
        try:
            yield
        finally:
            lock.release()
