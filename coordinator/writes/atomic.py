"""Atomic writes across shards: a batch of per-shard row changes is applied everywhere or
nowhere (two-phase commit, the coordinator's registry holding the decision).

    1. lock   take the write lock of every shard the batch touches (in shard order) and one
              new seq for each (reserved durably, coordinator/registry.py);
    2. stage  send each shard's part to every LIVE replica of it (`Shard.Stage`): the replica
              keeps it durably beside its rows, invisible to reads (shard/store.py `staged`);
    3. decide if every shard has at least one replica that staged it and no replica refused
              it, record "commit" durably in the registry, one row per (shard, seq), in one
              synchronous=FULL transaction; otherwise tell every replica asked to drop it and
              fail the call: nothing is applied anywhere;
    4. commit tell every replica that staged it to commit (`Shard.Resolve`): it applies the
              batch under its seq, in the transaction that deletes the staged copy. The call
              succeeds once the decision is recorded and the commits have answered.

Who is marked DEAD: only a replica that says it is gone (ReplicaDown: broken connection,
process gone) or damaged (DataLoss: its store failed a check;
coordinator/replicas/replica_set.py then quarantines and rebuilds it) while others of its shard
staged the batch, or one that fails the
commit (it holds a batch it has not applied, so it is behind). A refusal every replica could
give alike (a full disk: ResourceExhausted; a bad request; a timeout) aborts the batch and
marks nobody, so reads go on.

What a kill leaves, and how it is resolved (`ReplicaSet.resolve_staged`, run by a restarted
coordinator for every replica and by the recovery of a restarted replica, under the shard's
write lock): a batch staged on some replicas and no decision is dropped (presumed abort); a
batch with a decision is committed wherever it is still staged. A replica that applied a seq
through catch-up drops what it had staged at or below it. Decisions are forgotten once every
replica the batch was staged on has committed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from shardvec.contract.errors import (
    DataLoss,
    DeadlineExceeded,
    ReplicaDown,
    ResourceExhausted,
    ShardvecError,
    Unavailable,
    is_bad_request,
)
from shardvec.contract.types import ShardWrite, WriteAck
from shardvec.coordinator import phases
from shardvec.coordinator.replicas import events
from shardvec.coordinator.replicas.replica_set import Replica, ReplicaSet

log = logging.getLogger(__name__)

COMMIT_MIN_S = 10.0  # the least time a commit (or an abort) gets, whatever the caller's deadline
ABORT_S = 5.0


class Decisions(Protocol):
    """Where the commit decisions of one collection are kept (the registry in production)."""

    def decide(self, parts: Mapping[int, int]) -> None:
        """Durably record that the batch staged as seq parts[shard] on each shard commits."""
        ...

    def confirm(self, parts: Mapping[int, int]) -> None:
        """Every replica the batch was staged on committed it: the decision may be forgotten."""
        ...

    def committed(self, shard: int, seq: int) -> bool:
        ...


class Rerouted(Exception):
    """The collection's routes changed (a resharding step) between routing a write and taking
    its shards' locks: nothing was applied; route it again."""


class AtomicWriter:
    """Applies batches of per-shard writes atomically across one collection's shards."""

    def __init__(
        self,
        name: str,
        shard_sets: list[ReplicaSet],
        decisions: Decisions,
        route_epoch: Callable[[], int] = lambda: 0,
    ) -> None:
        self.name = name
        self.shard_sets = shard_sets
        self.decisions = decisions
        # Grows whenever a resharding changes where a bucket's writes go; a route changes
        # only under the write lock of the bucket's owner, so a write whose epoch still holds
        # once it has its shards' locks goes where it must.
        self.route_epoch = route_epoch
        self.rerouted = 0  # writes sent round again (their routes changed while they waited)
        self.batches = 0  # batches decided committed
        self.aborted = 0

    async def apply(
        self,
        writes: Mapping[int, ShardWrite],
        deadline: float,
        decide_by: float | None = None,
        epoch: int | None = None,
    ) -> dict[int, int]:
        """`apply_acks`, answering the rows affected per shard."""
        acks = await self.apply_acks(writes, deadline, decide_by, epoch)
        return {s: a.affected for s, a in acks.items()}

    async def apply_acks(
        self,
        writes: Mapping[int, ShardWrite],
        deadline: float,
        decide_by: float | None = None,
        epoch: int | None = None,
    ) -> dict[int, WriteAck]:
        """Apply `writes` (shard -> its part) everywhere or nowhere; per shard the first
        replica's commit ack (rows affected; for an update, the ids missing and rows inserted).
        `deadline` bounds the work; a batch not staged everywhere by `decide_by` (the caller's
        own deadline) is aborted rather than committed after its caller gave up.

        Raises, having applied nothing: ResourceExhausted (a full disk on a replica or on the
        registry), Unavailable (a shard with no live replica, or none that staged), a bad
        request, DeadlineExceeded; Rerouted (`epoch`, the route epoch the writes were routed
        under, is past)."""
        shards = sorted(s for s, w in writes.items() if w.rows or w.delete_where is not None)
        if not shards:
            return {}
        if epoch is not None and epoch != self.route_epoch():
            self.rerouted += 1
            raise Rerouted()
        sets = [self.shard_sets[s] for s in shards]
        async with contextlib.AsyncExitStack() as stack:
            for rs in sets:  # always in shard order: two batches never wait on each other
                await _acquire(rs.write_lock, decide_by, self.name)
                stack.callback(rs.write_lock.release)
            if epoch is not None and epoch != self.route_epoch():
                self.rerouted += 1
                raise Rerouted()
            if decide_by is not None and time.monotonic() >= decide_by:
                raise DeadlineExceeded(
                    f"{self.name}: the caller's deadline passed while the write waited its "
                    "turn; nothing was applied"
                )
            return await self._locked(writes, shards, sets, deadline, decide_by)

    async def apply_locked(
        self, writes: Mapping[int, ShardWrite], deadline: float
    ) -> dict[int, WriteAck]:
        """`apply_acks` for a caller that already holds the write lock of every shard in
        `writes` (a resharding copying rows between two shards it has locked)."""
        shards = sorted(s for s, w in writes.items() if w.rows or w.delete_where is not None)
        if not shards:
            return {}
        sets = [self.shard_sets[s] for s in shards]
        for rs in sets:
            if not rs.write_lock.locked():
                raise RuntimeError(f"{self.name}: shard {rs.shard}'s write lock is not held")
        return await self._locked(writes, shards, sets, deadline, None)

    async def _locked(
        self,
        writes: Mapping[int, ShardWrite],
        shards: list[int],
        sets: list[ReplicaSet],
        deadline: float,
        decide_by: float | None,
    ) -> dict[int, WriteAck]:
        targets = {rs.shard: rs.live() for rs in sets}
        for rs in sets:
            if not targets[rs.shard]:
                raise rs.none_live("to write to")
        seqs = {rs.shard: rs.take_seq() for rs in sets}  # spent even if the batch aborts
        asked = [(rs, r) for rs in sets for r in targets[rs.shard]]
        remaining = deadline - time.monotonic()
        results = await asyncio.gather(
            *(
                _call_stage(r, seqs[rs.shard], writes[rs.shard], remaining)
                for rs, r in asked
            ),
            return_exceptions=True,
        )
        staged: dict[int, list[Replica]] = {s: [] for s in shards}
        down: list[tuple[ReplicaSet, Replica, BaseException]] = []
        refusals: list[tuple[Replica, BaseException]] = []
        for (rs, r), res in zip(asked, results, strict=True):
            if isinstance(res, (ReplicaDown, DataLoss)):  # gone, or damaged: out of the set
                down.append((rs, r, res))
            elif isinstance(res, BaseException):
                refusals.append((r, res))
            else:
                staged[rs.shard].append(r)
        for rs, r, exc in down:
            rs.mark_dead(r, f"staging a write failed: {exc}")
        await phases.reached("staged")
        empty = [s for s in shards if not staged[s]]
        error: BaseException | None = None
        if refusals:
            error = _refusal(refusals)
        elif empty:
            causes = [e for rs, _, e in down if rs.shard == empty[0]]
            what = (
                f"{self.name} shard {empty[0]}: every replica failed to stage the write "
                f"({causes[0] if causes else 'no answer'})"
            )
            cause = causes[0] if causes else "no answer"
            events.refused(f"a write of {self.name}/shard-{empty[0]}",
                           f"every replica failed to stage it ({cause})")
            if causes and all(isinstance(e, DataLoss) for e in causes):
                error = events.logged(DataLoss(what))
            else:
                error = events.logged(Unavailable(what))
        if error is None and decide_by is not None and time.monotonic() >= decide_by:
            error = DeadlineExceeded(
                f"{self.name}: the caller's deadline passed before the write was decided; "
                "nothing was applied"
            )
        if error is None:
            try:
                await asyncio.to_thread(self.decisions.decide, seqs)
            except BaseException as exc:
                error = exc
        if error is not None:
            self.aborted += 1
            await self._abort(asked, seqs)
            if isinstance(error, (asyncio.CancelledError, ShardvecError)):
                raise error
            raise Unavailable(f"{self.name}: the write was not applied: {error}") from error
        self.batches += 1
        await phases.reached("decided")
        return await self._commit(writes, sets, staged, seqs, deadline)

    async def _abort(self, asked: list[tuple[ReplicaSet, Replica]], seqs: dict[int, int]) -> None:
        """Tell every replica asked to stage to drop it; one that cannot hear it keeps the
        batch until its next stage or restart drops it (no decision: presumed abort)."""
        results = await asyncio.gather(
            *(r.remote().resolve(seqs[rs.shard], False, ABORT_S) for rs, r in asked),
            return_exceptions=True,
        )
        for (_, r), res in zip(asked, results, strict=True):
            if isinstance(res, BaseException):
                log.info("abort of seq %d on %s not delivered: %s", seqs[r.shard], r.name, res)

    async def _commit(
        self,
        writes: Mapping[int, ShardWrite],
        sets: list[ReplicaSet],
        staged: dict[int, list[Replica]],
        seqs: dict[int, int],
        deadline: float,
    ) -> dict[int, WriteAck]:
        timeout = max(deadline - time.monotonic(), COMMIT_MIN_S)
        pairs = [(rs, r) for rs in sets for r in staged[rs.shard]]
        results = await asyncio.gather(
            *(
                r.remote().resolve(seqs[rs.shard], True, timeout, writes[rs.shard].owned)
                for rs, r in pairs
            ),
            return_exceptions=True,
        )
        acks: dict[int, WriteAck] = {}
        all_acked = True
        for (rs, r), res in zip(pairs, results, strict=True):
            if isinstance(res, WriteAck):
                r.applied_seq = max(r.applied_seq, seqs[rs.shard])
                acks.setdefault(rs.shard, res)
            else:
                all_acked = False
                # It holds the batch staged, not applied: out of reads until it resolves it.
                rs.mark_dead(r, f"commit of seq {seqs[rs.shard]} failed: {res}")
        for rs in sets:
            rs.acked_seq = seqs[rs.shard]
        if all_acked:
            self.decisions.confirm(seqs)
        return acks


async def _acquire(lock: asyncio.Lock, until: float | None, name: str) -> None:
    """Take `lock`, waiting no later than `until` (the caller's own deadline; None: as long
    as it takes): a write queued behind a layout switch or a long batch gives up in time."""
    if until is None:
        await lock.acquire()
        return
    try:
        await asyncio.wait_for(lock.acquire(), max(0.0, until - time.monotonic()))
    except TimeoutError:
        raise DeadlineExceeded(
            f"{name}: the caller's deadline passed while the write waited its turn; nothing "
            "was applied"
        ) from None


async def _call_stage(r: Replica, seq: int, write: ShardWrite, timeout: float) -> int:
    return await r.remote().stage(seq, write, timeout)


def _refusal(refusals: list[tuple[Replica, BaseException]]) -> BaseException:
    """The error to give the caller for a batch some replica refused: a full disk first (the
    operator's action), then a bad request, then a timeout, naming the replica."""
    def rank(exc: BaseException) -> int:
        if isinstance(exc, ResourceExhausted):
            return 0
        if is_bad_request(exc):
            return 1
        if isinstance(exc, DeadlineExceeded):
            return 2
        return 3

    replica, exc = min(refusals, key=lambda p: rank(p[1]))
    if isinstance(exc, ResourceExhausted):
        return ResourceExhausted(f"write not applied: {replica.name}: {exc.message}")
    return exc
