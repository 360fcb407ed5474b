"""Group commit: concurrent upserts to one shard share one replicated, fsync'd write.

A shard applies its writes one at a time: each takes a sequence number, one fsync'd SQLite
commit on every replica and the index's exclusive lock. Under many small concurrent upserts
they queued behind each other (32 clients, 10 % of them 10-row upserts, 2 shards: p50 487 ms,
p99 707 ms). Here an upsert goes out at once when none is in flight for its shard; otherwise
it waits, and everything that arrived meanwhile goes out together as one write when the
running one returns (up to `max_rows` rows and about `max_bytes`). Each caller's rows are
still applied whole or not at all (the group is one atomic batch, under one sequence number),
and a caller is acknowledged only after the group is durable on every in-sync replica.

Rows of one group are applied in arrival order: an id written by two callers keeps the later
row, as two writes one after another would. A group the shard rejects as a bad request
(which the coordinator's own validation should have caught) is retried one caller at a time,
so one caller's bad rows never fail another's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from shardvec.contract.errors import is_bad_request

# send(ids, vectors, metadata_json, documents, deadline): one replicated write of the shard
Sender = Callable[[list[str], np.ndarray, list[str], list[str], float], Awaitable[Any]]


@dataclass
class _Upsert:
    ids: list[str]
    vectors: np.ndarray
    metas: list[str]  # one JSON text per row, or empty: {} for every row
    docs: list[str]  # one document per row ("" none), or empty: no documents
    deadline: float
    future: asyncio.Future[None] = field(repr=False)

    def nbytes(self) -> int:
        texts = sum(len(m) for m in self.metas) + sum(len(d) for d in self.docs)
        return int(self.vectors.nbytes) + texts + 16 * len(self.ids)


class UpsertCombiner:
    """Combines the concurrent upserts of one shard into group writes."""

    def __init__(
        self, send: Sender, *, max_rows: int = 10_000, max_bytes: int = 32 * 1024 * 1024
    ) -> None:
        self._send = send
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self._pending: list[_Upsert] = []
        self._task: asyncio.Task[None] | None = None
        self.groups = 0  # writes sent

    async def upsert(
        self,
        ids: list[str],
        vectors: np.ndarray,
        metas: list[str],
        deadline: float,
        docs: list[str] | None = None,
    ) -> None:
        """Upsert the rows; returns once they are durable, as part of some group."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Upsert(ids, vectors, metas, docs or [], deadline, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._drain())
        await fut

    async def _drain(self) -> None:
        while self._pending:
            first = self._pending.pop(0)
            group, rows, size = [first], len(first.ids), first.nbytes()
            while self._pending:
                nxt = self._pending[0]
                if rows + len(nxt.ids) > self.max_rows or size + nxt.nbytes() > self.max_bytes:
                    break
                group.append(self._pending.pop(0))
                rows, size = rows + len(nxt.ids), size + nxt.nbytes()
            await self._write(group)

    async def _write(self, group: list[_Upsert]) -> None:
        try:
            await self._send_group(group)
        except BaseException as exc:
            if len(group) > 1 and is_bad_request(exc):
                for one in group:  # a rejected group applied nothing: try each on its own
                    await self._write([one])
                return
            for u in group:
                if u.future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):  # the coordinator is stopping
                    u.future.cancel()
                else:
                    u.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for u in group:
                if not u.future.done():
                    u.future.set_result(None)

    async def _send_group(self, group: list[_Upsert]) -> None:
        self.groups += 1
        deadline = max(u.deadline for u in group)  # one caller's short deadline fails nobody
        if len(group) == 1:
            u = group[0]
            await self._send(u.ids, u.vectors, u.metas, u.docs, deadline)
            return
        ids = [i for u in group for i in u.ids]
        vectors = np.concatenate([u.vectors for u in group])
        if any(u.metas for u in group):
            metas = [m for u in group for m in (u.metas or [""] * len(u.ids))]
        else:
            metas = []
        docs: list[str] = []
        if any(u.docs for u in group):
            docs = [d for u in group for d in (u.docs or [""] * len(u.ids))]
        last = {id_: row for row, id_ in enumerate(ids)}  # a later row of an id wins
        if len(last) < len(ids):
            keep = sorted(last.values())
            ids = [ids[r] for r in keep]
            vectors = vectors[keep]
            metas = [metas[r] for r in keep] if metas else []
            docs = [docs[r] for r in keep] if docs else []
        await self._send(ids, vectors, metas, docs, deadline)
