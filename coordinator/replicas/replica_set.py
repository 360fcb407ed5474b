"""Replica sets: the replication rule of one shard, enforced here.

Writes go to every in-sync (LIVE) replica of the shard with the shard's next sequence number
(`take_seq`, under `write_lock`), in two phases across every shard a batch touches
(coordinator/writes/atomic.py): staged on each, then committed once the decision is recorded; a
replica that says it is gone (ReplicaDown) while staging, or fails the commit, is marked DEAD
and leaves the in-sync set, and the write still succeeds while at least one replica of each
shard staged it. A refusal every replica could give alike (a full disk, a bad request, a
timeout) aborts the batch everywhere and marks nobody DEAD; with no LIVE replica a write fails
with Unavailable. Reads go to one LIVE replica, round-robin, and move to the next replica when
one fails or times out, within the caller's deadline (with more than 0.5 s left and another
replica to try, a try gets half of what is left). A read marks a replica DEAD only when the call
says the replica is down (ReplicaDown: broken connection, process gone), never for a timeout: a
heavy query or a client's short deadline running out, on the whole deadline or on the first
replica's share of it, says the query is slow, not that the replica is, and every replica stays
LIVE. A replica that stops answering altogether is taken out by the health probe (`probe`),
whose fixed timeout on a cheap call does not depend on any client's deadline.

A DEAD replica is reconnected when its process is back, resolves the batches it holds staged
(`resolve_staged`: committed if the registry recorded the commit, else dropped), copies what
it missed from a LIVE peer (`ReplicaControl.catch_up`) while writes carry on, and rejoins
LIVE only when level: its last catch-up, within CATCH_UP_LAG batches of the peer, runs under
the write lock. With no LIVE peer it rejoins only if it already holds every acknowledged write.

Replicas are reached through the shard interface (`ShardLike`) and controlled through a
`ReplicaControl` handed in (Ray actors in production, in-process engines in tests); nothing
here knows which.

Self-repair: a replica whose store fails its checks (SQLite's quick_check or a row checksum,
at open, in its background scrub, or when a row is read) answers DataLoss. It is DAMAGED and
out of service: reads and writes skip it. With a LIVE peer it is quarantined
(`ReplicaControl.repair`: its directory moved aside, the replica restarted empty), counted in
`Replica.repairs`, and then caught up like any DEAD replica, copying every row from the peer.
With no LIVE peer it stays DAMAGED, its reason in `shardvec status`, until one is LIVE: a
damaged store is never served and never replaced by an empty one that would lose its rows.

Replica states::

    STARTING --ready--> CATCHING_UP --level with a live peer--> LIVE
                             ^    ^                               |
                             |    |       replica down (ReplicaDown), write failed,
                             |    |       DataLoss, or health probe unanswered
                             |    +------ process is back ------- DEAD <+
                             |                                     |
                             +-- repaired (live peer) -- DAMAGED <-+ store failed a check
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from shardvec.contract.errors import (
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    ReplicaDown,
    ReplicaFault,
    Unavailable,
)
from shardvec.contract.settings import CollectionSpec
from shardvec.contract.shard_api import ShardLike
from shardvec.contract.types import ReplicaStatus
from shardvec.coordinator.replicas import events

log = logging.getLogger(__name__)

T = TypeVar("T")

DAMAGED_RECHECK_S = 2.0  # how often a DAMAGED replica without a live peer looks for one
CATCH_UP_LAG = 2  # batches a replica may trail before the final, write-blocking catch-up


class ReplicaState(enum.Enum):
    STARTING = "starting"
    CATCHING_UP = "catching_up"
    LIVE = "live"
    DEAD = "dead"
    DAMAGED = "damaged"


class ReplicaControl(Protocol):
    """Control-plane operations on a replica's process (Ray in production)."""

    async def address(self) -> str:
        """Where the replica serves now; waits or raises while its process is restarting."""
        ...

    def client(self, name: str, address: str) -> ShardLike:
        """A data-plane handle on the replica serving at `address`."""
        ...

    async def describe(self) -> dict[str, Any]:
        """applied_seq, count, pid and node_id of the replica."""
        ...

    async def catch_up(self, peer: ShardLike) -> int:
        """Copy what `peer` applied after this replica's seq; returns the replica's new seq."""
        ...

    async def repair(self) -> None:
        """Quarantine the replica's damaged directory and restart it empty."""
        ...

    async def close(self) -> None:
        """Checkpoint and stop the replica."""
        ...



# (spec, shard, replica, siblings) -> the control of that replica; `siblings()` gives the node
# ids the shard's other replicas run on, so a placement can keep them apart. Ray actors in
# production (coordinator/replicas/ray_control.py), in-process engines in tests.
ControlFactory = Callable[[CollectionSpec, int, int, Callable[[], set[str]]], ReplicaControl]

class Replica:
    """One replica of one shard as the coordinator sees it."""

    def __init__(self, shard: int, index: int, control: ReplicaControl, label: str):
        self.shard = shard
        self.index = index
        self.control = control
        self.name = f"{label}/shard-{shard}/replica-{index}"
        self.state = ReplicaState.STARTING
        self.client: ShardLike | None = None
        self.applied_seq = 0
        self.count = 0
        self.pid = 0
        self.node_id = ""
        self.fault = ""  # why it is DAMAGED
        self.repairs = 0  # times it was quarantined and rebuilt from a peer
        self.reported_no_peer = False  # "no live peer to rebuild it" logged for this damage
        self.probes_late = 0  # health probes in a row it did not answer in time
        # Told of every state change (CoordinatorRuntime: the layout_changed hook that fences
        # and re-pushes the layout to the query fronts, coordinator/fronts/publish.py).
        self.on_state: Callable[[Replica], None] | None = None

    def set_state(self, state: ReplicaState, why: str = "") -> None:
        """Move to `state`, logged as one line (coordinator/replicas/events.py) saying `why`."""
        if state is not self.state:
            events.state_change(self.name, self.state.value, state.value, why)
            self.state = state
            if self.on_state is not None:
                self.on_state(self)

    async def connect(self) -> None:
        address = await self.control.address()
        if self.client is None or self.client.address != address:
            if self.client is not None:
                await self.client.close()
            self.client = self.control.client(self.name, address)
        desc = await self.control.describe()
        self.applied_seq = int(desc["applied_seq"])
        self.count = int(desc["count"])
        self.pid = int(desc["pid"])
        self.node_id = str(desc["node_id"])

    def status(self) -> ReplicaStatus:
        return ReplicaStatus(
            shard=self.shard,
            replica=self.index,
            state=self.state.value,
            address=self.client.address if self.client else "",
            node_id=self.node_id,
            pid=self.pid,
            count=self.count,
            applied_seq=self.applied_seq,
            reason=self.fault if self.state is ReplicaState.DAMAGED else "",
        )

    def remote(self) -> ShardLike:
        if self.client is None:
            raise ReplicaDown(f"{self.name} has no connection yet")
        return self.client


class ReplicaSet:
    """The replicas of one shard, its write sequence and its read rotation."""

    def __init__(
        self,
        shard: int,
        replicas: list[Replica],
        *,
        reserved: int = 0,
        reserve: Callable[[int], int] | None = None,
        committed: Callable[[int], bool] | None = None,
    ) -> None:
        """Shard `shard`'s `replicas`. A set that takes writes is given its durable sequence
        numbers: `reserved`, the highest reserved so far (the next seq is one above it),
        `reserve(upto)` to reserve more (returns the new high mark) and `committed(seq)`, the
        recorded decision of a staged batch. Without them (a query front's) it only reads."""
        next_seq = reserved + 1
        self.shard = shard
        self.replicas = replicas
        self.next_seq = next_seq
        self.acked_seq = next_seq - 1  # the newest seq every in-sync replica holds
        self.write_lock = asyncio.Lock()
        self._reserve = reserve
        self._reserved = reserved
        self._committed = committed  # seq -> whether its staged batch was decided committed
        self._rr = 0
        self._recovering: dict[int, asyncio.Task[None]] = {}
        self._closed = False

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.state is ReplicaState.LIVE]

    def label(self) -> str:
        """`docs/shard-1`: the shard as its replicas' names say it."""
        if self.replicas:
            return self.replicas[0].name.rsplit("/", 1)[0]
        return f"shard-{self.shard}"

    def none_live(self, what: str) -> Exception:
        """The refusal of a read or write (`what`: "to read from"): Unavailable, or DataLoss
        naming the damaged replicas when that is why; logged as a refusal."""
        damaged = [r for r in self.replicas if r.state is ReplicaState.DAMAGED]
        states = ", ".join(f"replica-{r.index} {r.state.value}" for r in self.replicas)
        kind = "read" if "read" in what else "write"
        events.refused(f"a {kind} of {self.label()}", f"no live replica ({states or 'none'})")
        if damaged and len(damaged) == len(self.replicas):
            names = "; ".join(f"{r.name}: {r.fault}" for r in damaged)
            return events.logged(
                DataLoss(f"shard {self.shard}: no live replica {what}; damaged: {names}"))
        return events.logged(Unavailable(f"shard {self.shard}: no live replica {what}"))

    def take_seq(self) -> int:
        """The shard's next sequence number, reserved durably first (call under write_lock).
        A number is spent even if its batch aborts: a replica may have staged it."""
        if self._reserve is None:
            raise FailedPrecondition(f"shard {self.shard}: a read-only replica set is not written")
        seq = self.next_seq
        if seq > self._reserved:
            self._reserved = self._reserve(seq)
        self.next_seq += 1
        return seq

    async def resolve_staged(self, replica: Replica, timeout: float = 30.0) -> None:
        """Commit or drop every batch `replica` holds staged, as the recorded decision says
        (none recorded: it aborted). Run under write_lock, or before any write is sent."""
        if self._committed is None:
            raise FailedPrecondition(f"shard {self.shard}: a read-only replica set is not written")
        info = await replica.remote().info(timeout)
        for seq in info.staged:
            commit = self._committed(seq)
            ack = await replica.remote().resolve(seq, commit, timeout)
            events.replica_event(
                replica.name,
                f"staged batch {seq} {'committed' if commit else 'dropped'} as recorded",
            )
            replica.applied_seq = max(replica.applied_seq, ack.applied_seq)

    async def read(self, call: Callable[[ShardLike, float], Awaitable[T]], deadline: float) -> T:
        """Run `call` on one LIVE replica; on failure try the next, within the deadline.

        Only ReplicaDown (a transport failure) and DataLoss mark the replica DEAD; a timeout
        or a replica's own error (ReplicaFault) moves on to the next replica with what is
        left of the deadline and marks nobody."""
        candidates = self.live()
        if not candidates:
            raise self.none_live("to read from")
        ordered = self.read_order(candidates)
        last: BaseException | None = None
        for attempt, replica in enumerate(ordered):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            left = len(ordered) - attempt
            timeout = remaining if left == 1 else max(remaining / 2, min(remaining, 0.5))
            try:
                return await call(replica.remote(), timeout)
            except (ReplicaDown, DataLoss) as exc:
                last = exc
                self.mark_dead(replica, f"a read failed: {exc}")
            except ReplicaFault as exc:
                # It answered with an error of its own (a bug): serving, so not marked dead;
                # the next replica may answer.
                last = exc
                events.trouble(f"read from {replica.name}", f"failed, tried elsewhere: {exc}")
            except DeadlineExceeded as exc:
                # Slow for this query (or this caller's deadline), not dead: a timeout must
                # not take a healthy replica out; the next one gets what is left.
                last = exc
                events.trouble(f"read from {replica.name}", f"timed out, tried elsewhere: {exc}")
        if isinstance(last, DeadlineExceeded) or deadline - time.monotonic() <= 0:
            raise DeadlineExceeded(f"shard {self.shard}: deadline exceeded")
        events.refused(f"a read of {self.label()}", f"every live replica failed ({last})")
        raise events.logged(Unavailable(f"shard {self.shard}: every replica failed ({last})"))

    def read_order(self, candidates: list[Replica]) -> list[Replica]:
        """The order a read tries the LIVE replicas in: round-robin (a query front puts the
        ones on its own node first, coordinator/fronts/)."""
        start = self._rr % len(candidates)
        self._rr += 1
        return candidates[start:] + candidates[:start]

    def mark_dead(self, replica: Replica, why: str = "") -> None:
        """Take `replica` out of service (`why`: the failure that showed it down) and start
        its recovery."""
        if replica.state in (ReplicaState.DEAD, ReplicaState.DAMAGED) or self._closed:
            return
        if replica not in self.replicas:  # removed (coordinator/changes/replicas.py)
            return
        replica.probes_late = 0
        replica.set_state(ReplicaState.DEAD, why)
        self.start_recovery(replica)

    def start_recovery(self, replica: Replica) -> None:
        task = self._recovering.get(replica.index)
        if task is None or task.done():
            self._recovering[replica.index] = asyncio.ensure_future(self._recover(replica))

    async def _recover(self, replica: Replica) -> None:
        """Reconnect to the restarted process, catch it up from a live peer, rejoin."""
        delay = 0.2
        while not self._closed:
            try:
                await replica.connect()
                async with self.write_lock:  # no batch of this shard is between its phases
                    await self.resolve_staged(replica)
                replica.set_state(ReplicaState.CATCHING_UP,
                                  f"process back, at seq {replica.applied_seq}")
                await self._catch_up(replica)
                return
            except DataLoss as exc:
                if await self._repair(replica, exc):
                    delay = 0.2
                    continue
                await asyncio.sleep(DAMAGED_RECHECK_S)
            except Exception as exc:  # the process is still restarting; try again
                log.debug("recovery of %s waiting: %s", replica.name, exc)
                replica.set_state(ReplicaState.DEAD, f"recovery waiting: {exc}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _repair(self, replica: Replica, exc: DataLoss) -> bool:
        """A replica answered DataLoss: DAMAGED; quarantined and restarted empty when a LIVE
        peer holds the rows (True), else left out of service (False)."""
        if replica.state is not ReplicaState.DAMAGED or replica.fault != exc.message:
            replica.fault = exc.message
            replica.set_state(ReplicaState.DAMAGED, exc.message)
        peers = [r for r in self.live() if r is not replica]
        if not peers:
            if not replica.reported_no_peer:
                events.needs_action(
                    f"replica {replica.name}",
                    f"damaged and no live replica can rebuild it; out of service: {exc.message}",
                )
                replica.reported_no_peer = True
            return False
        events.replica_event(
            replica.name, f"damaged; quarantined, rebuilding it from {peers[0].name}"
        )
        await replica.control.repair()
        replica.repairs += 1
        replica.fault = ""
        replica.reported_no_peer = False
        return True

    async def _catch_up(self, replica: Replica) -> None:
        start = replica.applied_seq
        while True:
            peers = [r for r in self.live() if r is not replica]
            if not peers:
                # Nobody to copy from: it may rejoin only if it holds every acknowledged write.
                if replica.applied_seq >= self.acked_seq:
                    replica.set_state(ReplicaState.LIVE, "holds every acknowledged write")
                    return
                raise Unavailable(f"{replica.name}: behind and no live peer to catch up from")
            peer = peers[0]
            lag = self.acked_seq - replica.applied_seq
            if lag <= CATCH_UP_LAG:
                async with self.write_lock:
                    replica.applied_seq = await replica.control.catch_up(peer.remote())
                    replica.set_state(
                        ReplicaState.LIVE,
                        f"caught up {max(0, replica.applied_seq - start):,} batches from "
                        f"{peer.name.rsplit('/', 1)[-1]}, at seq {replica.applied_seq}",
                    )
                return
            replica.applied_seq = await replica.control.catch_up(peer.remote())

    async def probe(self, timeout: float = 2.0, late_limit: int = 2) -> None:
        """Ask every LIVE replica for its figures; one that does not answer is marked DEAD.

        Run periodically, so a dead process is noticed without waiting for a request. Unlike
        a read, probe timeouts mark the replica DEAD: `info` is a cheap call under a fixed
        `timeout` that no client's deadline shortens, so a replica that cannot answer it is not
        answering (hung or wedged), and reads no longer take such a replica out themselves.
        It takes `late_limit` late answers in a row: on a machine with every core busy one
        answer took longer than 2 s, and the replica, marked DEAD, refused reads until it had
        recovered (a memory-stress test's probe saw UNAVAILABLE beside a full test run). A
        broken connection (the process gone) or lost data marks it DEAD at once.
        """
        for r in self.live():
            try:
                info = await r.remote().info(timeout)
            except DeadlineExceeded as exc:
                r.probes_late += 1
                if r.probes_late >= late_limit:
                    self.mark_dead(r, f"health probe unanswered {r.probes_late} times: {exc}")
                continue
            except (ReplicaDown, DataLoss) as exc:
                self.mark_dead(r, f"health probe unanswered: {exc}")
                continue
            r.probes_late = 0
            r.count = int(info.count)
            r.applied_seq = max(r.applied_seq, int(info.applied_seq))
            r.pid = int(info.pid)

    def add(self, replica: Replica) -> None:
        """A new replica joins: DEAD until it has recovered (connected, caught up from a LIVE
        peer, level), so it serves reads and takes writes only once LIVE."""
        self.replicas.append(replica)
        replica.set_state(ReplicaState.DEAD, "added; waiting for its process")
        self.start_recovery(replica)

    async def remove(self, replica: Replica, drain_s: float = 1.0) -> None:
        """Take `replica` out of the set under the write lock (no batch of this shard is
        between its phases, so it is on none half way), then close its connection once the
        reads already sent to it had `drain_s` to finish. Its process is the caller's."""
        async with self.write_lock:
            if replica in self.replicas:
                self.replicas.remove(replica)
            replica.state = ReplicaState.DEAD
            task = self._recovering.pop(replica.index, None)
            if task is not None:
                task.cancel()
        events.replica_event(replica.name, "removed from its shard")
        await asyncio.sleep(drain_s)
        if replica.client is not None:
            await replica.client.close()
            replica.client = None

    async def close(self) -> None:
        self._closed = True
        for task in self._recovering.values():
            task.cancel()
        for r in self.replicas:
            if r.client is not None:
                await r.client.close()
