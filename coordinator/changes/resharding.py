"""Online resharding: a collection's shard count changes while it serves reads and writes.

Whole routing buckets move to new owners (coordinator/layout.py); no id is ever rehashed.
The change is a state machine persisted in the registry (`changes`, coordinator/registry.py),
each phase written before it takes effect:

    copying    the new shards (when growing) are created and placed; the moving buckets'
               rows are copied from a live replica of their old owner, a step of buckets at a
               time, in (bucket, id) order. A step runs under the write locks of its two
               shards: it reads the old owner's rows of those buckets, makes the new owner's
               rows of them the same (upserts, and deletes of rows a resumed copy left). Every
               write to a moving bucket goes to both owners, in the same atomic batch, from
               before the first step (routes change once, not at every step: a write waiting
               for a step's locks is never sent round again). Reads use the old layout's view,
               whose owners hold every row; a shard of it receiving copies answers only for
               the buckets it owns (coordinator/queries/read_view.py), published (and pushed to the
               fronts) before the first copy is written.
    cleanup    switch, under every shard's write lock (writes pause; reads never do): the new
               spec, layout (version + 1) and this phase are written in one registry
               transaction, the new view is published with the old owners marked foreign (so
               they answer only for the buckets they keep) and pushed to the fronts. Once the
               reads of older views have drained, the moved rows are deleted from the old
               owners that stay, step by step under each one's write lock; shards removed by a
               shrink are closed and their directories removed; the view drops its foreign
               mark.
    aborting   `shardvec scale --abort` before the switch (or after the change failed): the
               dual writes stop, the new shards are removed, and the rows copied to shards
               that stay (a shrink's, and a growth's that moves buckets between existing
               shards) are deleted, the view masking them until they are gone.

Lock order: a step takes the write locks of its shards in shard order, as every atomic write
does; the switch takes every shard's. No read takes any of them (coordinator/queries/read_view.py),
and the change waits for reads (`ReadViews.drained`) holding none, so a read and a layout
change never wait on each other in a cycle.

What a kill -9 leaves (the coordinator, or the whole cluster) and what the restart does,
before the collection is served:
    copying    resumed: the new shards reopen, the dual writes resume, and the copy goes on
               (a step not recorded is copied again; it replaces the new owner's rows of its
               buckets, so it is idempotent).
    cleanup    the new layout serves; the moved rows still on old owners and the removed
               shards are deleted first (idempotent).
    aborting   the rollback is finished (idempotent).
A replica killed during a step fails the step, which is retried once the replica is back
(Ray restarts it); nothing a failed step wrote is counted as copied. A change that stops on
an error it cannot retry is shown failed (DescribeCollection, `shardvec status`) and can be
aborted; a restart tries it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Protocol

import numpy as np

from shardvec.contract.errors import FailedPrecondition, InvalidArgument, ShardvecError
from shardvec.contract.settings import CollectionSpec
from shardvec.contract.shard_api import ShardLike
from shardvec.contract.types import ScrollPage, ShardScroll, ShardWrite
from shardvec.coordinator import phases
from shardvec.coordinator.changes.plan import (
    ABORTING,
    CLEANUP,
    COPYING,
    LayoutChange,
    copy_steps,
    plan_owners,
    runs,
)
from shardvec.coordinator.changes.replicas import ReplicaChanges
from shardvec.coordinator.collection import CollectionRuntime
from shardvec.coordinator.layout import ChangeProgress, Layout
from shardvec.coordinator.paths import collection_dir
from shardvec.coordinator.registry import CollectionDecisions, Registry
from shardvec.coordinator.replicas import events
from shardvec.coordinator.replicas.replica_set import ReplicaSet


class ReshardHost(Protocol):
    """What a layout change needs of its host, the coordinator's runtime (coordinator/runtime.py,
    which imports this module, so it is named here by its shape)."""

    registry: Registry
    data_dir: Path
    replica_changes: ReplicaChanges

    def replica_set(
        self, spec: CollectionSpec, shard: int, decisions: CollectionDecisions,
        indices: list[int] | None = None,
    ) -> ReplicaSet: ...

    async def bring_up(self, sets: list[ReplicaSet], *, new: bool) -> None: ...

    async def remove_shards(self, spec: CollectionSpec, shards: range) -> None: ...

    async def scale_replicas(self, name: str, replicas: int) -> None: ...

    async def layout_changed(self, name: str) -> None: ...


PAGE_ROWS = 250  # rows per read and per write within a step: one index add a search may wait for
PAGE_BYTES = 16 * 1024 * 1024
STEP_DEADLINE_S = 120.0
RETRY_S = 0.5


class Resharder:
    """Runs one collection's shard-count change to its end (or its rollback)."""

    def __init__(self, runtime: ReshardHost, col: CollectionRuntime, change: LayoutChange):
        self.runtime = runtime
        self.col = col
        self.change = change
        self.task: asyncio.Task[None] | None = None
        self.done = asyncio.Event()
        self.error: BaseException | None = None
        col.change = ChangeProgress(
            "shards", change.phase, change.target_shards, change.target_replicas,
            change.rows_total, change.rows_copied, change.started,
        )

    # ---- persistence -----------------------------------------------------------------
    async def _persist(self) -> None:
        await asyncio.to_thread(
            self.runtime.registry.set_change, self.col.spec.name, self.change.to_json()
        )
        progress = self.col.change
        if progress is not None:
            progress.phase = self.change.phase
            progress.rows_copied = self.change.rows_copied
            progress.rows_total = self.change.rows_total

    def _show(self, in_step: int) -> None:
        """DescribeCollection's progress: the rows of the steps done plus `in_step` rows of the
        step running (persisted only when a step ends)."""
        progress = self.col.change
        if progress is not None:
            progress.rows_total = max(self.change.rows_total, self.change.rows_copied + in_step)
            progress.rows_copied = self.change.rows_copied + in_step

    # ---- the run ----------------------------------------------------------------------
    @property
    def failed(self) -> bool:
        """The run stopped on an error before the switch: abort rolls it back."""
        return self.done.is_set() and self.error is not None and self.change.phase == COPYING

    async def abort(self) -> None:
        """Roll the change back; FAILED_PRECONDITION once it has switched."""
        if self.failed:
            self.change.abort = True
            self.change.phase = ABORTING
            await self._persist()
            await self.rollback()
            self.error = None
            return
        if self.change.phase != COPYING or self.done.is_set():
            events.refused(f"an abort of the layout change of {self.col.spec.name}",
                           f"it has switched (phase {self.change.phase})")
            raise FailedPrecondition(
                f"collection {self.col.spec.name!r}: the layout change has switched to the new "
                f"layout (phase {self.change.phase}); it can no longer be aborted"
            )
        self.change.abort = True
        await self.done.wait()
        if self.change.phase == CLEANUP:
            events.refused(f"an abort of the layout change of {self.col.spec.name}",
                           "it switched before the abort reached it")
            raise FailedPrecondition(
                f"collection {self.col.spec.name!r}: the layout change switched before the "
                "abort reached it; the new layout serves"
            )

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        # Replica changes and moves (coordinator/changes/replicas.py) wait for the shards'.
        lock = self.runtime.replica_changes.lock(self.col.spec.name)
        try:
            async with lock:
                if self.change.phase == COPYING:
                    await self._copy_all()
                    if self.change.abort:
                        self.change.phase = ABORTING
                        await self._persist()
                    else:
                        await self._switch()
                if self.change.phase == ABORTING:
                    await self.rollback()
                elif self.change.phase == CLEANUP:
                    await self._finish_cleanup()
            if self.change.phase == CLEANUP:
                await self._replicas()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # recorded; the change stays persisted for a restart
            self.error = exc
            events.needs_action(f"collection {self.col.spec.name}",
                                f"its layout change stopped ({exc}); `shardvec scale "
                                f"{self.col.spec.name} --abort` rolls it back", exc_info=True)
            if self.col.change is not None:
                self.col.change.error = str(exc)
                if self.change.phase == COPYING:
                    self.col.change.phase = "failed"  # abort rolls it back
        finally:
            self.done.set()

    async def _retrying(self, what: str, step: Callable[[], object]) -> None:
        """Run the coroutine function `step` until it succeeds (a replica restarting, a shard
        with no live replica for a moment); a bad request or a precondition is final."""
        delay = RETRY_S
        while True:
            try:
                await step()  # type: ignore[misc]
                if self.col.change is not None:
                    self.col.change.error = ""
                return
            except (InvalidArgument, FailedPrecondition):
                raise
            except (ShardvecError, ConnectionError, TimeoutError) as exc:
                if self.change.abort and what == "copy":
                    return  # the rollback deletes whatever the step wrote
                events.trouble(f"collection {self.col.spec.name}",
                               f"{what} step failed, retrying: {exc}")
                if self.col.change is not None:
                    self.col.change.error = f"{what}: {exc}"
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _rows_per_bucket(self, shard: int) -> float:
        rs = self.col.shard_sets[shard]
        rows = max((r.count for r in rs.replicas), default=0)
        owned = int(np.count_nonzero(np.asarray(self.change.old_owners) == shard)) or 1
        return rows / owned

    def arm(self) -> None:
        """A view in which the shards of the old layout that receive copies answer only for
        their own buckets, before any copy or dual write reaches them."""
        receivers = self.change.receivers()
        if self.col.foreign != receivers:
            self.col.publish_view(foreign=receivers)

    async def _dual_on(self) -> None:
        """From now on every write to a moving bucket goes to its old and its new owner, in
        one atomic batch, whether or not the bucket is copied yet: so the routes change once
        for the whole copy (under every shard's write lock), and no write waiting for a
        step's locks is ever sent round again. A step makes the new owner's rows of its
        buckets equal to the old owner's (dual writes before it included) under both locks."""
        col, change = self.col, self.change
        if col.dual is not None:
            return
        async with _locks(col.shard_sets):
            old, new = np.asarray(change.old_owners), np.asarray(change.new_owners)
            col.route_dual(np.where(old != new, new, -1).astype(np.int32))

    async def _copy_all(self) -> None:
        change = self.change
        self.arm()
        await self.col.views.drained()  # no read of a view without the receivers' masks
        await self._dual_on()
        if not change.rows_total:
            change.rows_total = int(sum(self._rows_per_bucket(int(change.old_owners[b]))
                                        for b in change.moving()))
        self._show(0)  # DescribeCollection shows the total before the first step ends
        for src, dst, b0, b1 in copy_steps(change, self._rows_per_bucket):
            if change.abort:
                return

            async def step(src: int = src, dst: int = dst, b0: int = b0, b1: int = b1) -> None:
                await self._copy_step(src, dst, b0, b1)

            await self._retrying("copy", step)

    async def _copy_step(self, src: int, dst: int, b0: int, b1: int) -> None:
        col = self.col
        deadline = time.monotonic() + STEP_DEADLINE_S
        copied = 0
        async with _locks(col.shard_sets[s] for s in sorted({src, dst})):
            have: set[str] = set()
            async for page in _pages(col.shard_sets[dst], b0, b1, deadline, full=False):
                have.update(page.ids)
            async for page in _pages(col.shard_sets[src], b0, b1, deadline, full=True):
                have.difference_update(page.ids)
                write = ShardWrite(
                    ids=page.ids,
                    vectors=page.vectors,
                    metadata_json=[m or "{}" for m in page.metadata_json],
                    documents=list(page.documents or []),
                    expires_at=list(page.expires_at or []),  # the same absolute expiry
                )
                await col.atomic.apply_locked({dst: write}, deadline)
                copied += len(page.ids)
                self._show(copied)  # page by page: `shardvec scale`'s bar moves live
            if have:  # rows a resumed copy left that the old owner no longer holds
                await _delete_locked(col, dst, sorted(have), deadline)
            self.change.copied.extend(range(b0, b1))
            self.change.rows_copied += copied
            await self._persist()
        await phases.reached("copied-step")

    async def _switch(self) -> None:
        col, change = self.col, self.change
        new_layout = Layout(col.layout.version + 1, np.asarray(change.new_owners, dtype=np.int32))
        new_spec = dataclasses.replace(col.spec, shards=change.target_shards)
        async with _locks(col.shard_sets):  # writes wait; no read waits
            change.phase = CLEANUP
            await asyncio.to_thread(
                self.runtime.registry.switch_layout, new_spec, new_layout.to_json(),
                change.to_json(),
            )
            col.switch_layout(new_spec, new_layout, self.change.givers())
            if col.change is not None:
                col.change.phase = CLEANUP
            await phases.reached("switched")
            # The fronts read by the new view before a write lands on the new owners alone.
            await self.runtime.layout_changed(new_spec.name)
        events.layout_event(new_spec.name, f"switched to layout version {new_layout.version} "
                            f"({change.from_shards} -> {new_layout.shards} shards, "
                            f"{change.rows_copied:,} rows copied)")
        # The moved rows leave their old owners once no read of an older view can need them.
        await col.views.drained()
        await self._retrying("cleanup", self._delete_moved)

    async def _delete_moved(self) -> None:
        """Delete, on every old owner that stays, the rows of the buckets it gave away."""
        await self._delete_buckets(self.change.old_owners, self.change.new_owners)

    async def _delete_buckets(self, held: list[int], kept: list[int]) -> None:
        """On every shard that stays, delete its rows in the buckets `held` gives it and
        `kept` does not: no write reaches those rows any more (the routes left them), so their
        ids are read without a lock and deleted a page at a time under the shard's write
        lock, which a write waits for no longer than one page's delete."""
        col, change = self.col, self.change
        held_a, kept_a = np.asarray(held), np.asarray(kept)
        for shard in range(min(change.from_shards, change.target_shards)):
            for b0, b1 in runs(np.flatnonzero((held_a == shard) & (kept_a != shard))):
                ids: list[str] = []
                deadline = time.monotonic() + STEP_DEADLINE_S
                async for page in _pages(col.shard_sets[shard], b0, b1, deadline, full=False):
                    ids.extend(page.ids)
                for i in range(0, len(ids), PAGE_ROWS):
                    async with _locks([col.shard_sets[shard]]):
                        await _delete_locked(col, shard, ids[i : i + PAGE_ROWS],
                                             time.monotonic() + STEP_DEADLINE_S)  # fmt: skip

    async def _finish_cleanup(self) -> None:
        """After the switch: remove the shards a shrink left behind, then end the change
        (or hand on to the replica change asked for with it)."""
        col, change = self.col, self.change
        async with _locks(col.shard_sets):
            removed = col.shard_sets[change.target_shards:]
            del col.shard_sets[change.target_shards:]
            col.reroute()
        col.publish_view(foreign=frozenset())  # every moved row has left its old owner
        await self.runtime.layout_changed(col.spec.name)
        for rs in removed:
            await rs.close()
        await self.runtime.remove_shards(col.spec, range(change.target_shards,
                                                         change.from_shards))

    async def _replicas(self) -> None:
        change = self.change
        await asyncio.to_thread(self.runtime.registry.set_change, self.col.spec.name, None)
        self.col.change = None
        if change.target_replicas != self.col.spec.replicas:
            await self.runtime.scale_replicas(self.col.spec.name, change.target_replicas)

    async def rollback(self) -> None:
        """Undo a change that has not switched: dual writes off, new shards removed, the rows
        copied to shards that stay (a shrink's, or a growth's between existing shards)
        deleted while the view masks them; then the change is over."""
        col, change = self.col, self.change
        async with _locks(col.shard_sets):
            col.route_dual(None)
            removed = col.shard_sets[change.from_shards:]
            del col.shard_sets[change.from_shards:]
        if col.foreign != change.receivers():  # a resumed rollback: copies may be there
            col.publish_view(foreign=change.receivers())
            await self.runtime.layout_changed(col.spec.name)
            await col.views.drained()

        await self._retrying("rollback", self._delete_copied)
        col.publish_view(foreign=frozenset())  # the copies are gone
        await self.runtime.layout_changed(col.spec.name)
        for rs in removed:
            await rs.close()
        await self.runtime.remove_shards(col.spec, range(change.from_shards,
                                                         change.target_shards))
        await asyncio.to_thread(self.runtime.registry.set_change, col.spec.name, None)
        col.change = None
        events.layout_event(col.spec.name,
                            f"layout change rolled back to {change.from_shards} shards")

    async def _delete_copied(self) -> None:
        """Delete from the shards that stay the rows they got of buckets they do not own (all
        moving buckets: a step may have written rows before it was recorded)."""
        await self._delete_buckets(self.change.new_owners, self.change.old_owners)


@contextlib.asynccontextmanager
async def _locks(sets: Iterable[ReplicaSet]) -> AsyncIterator[None]:
    """The write locks of `sets`, taken in shard order as every atomic write takes them."""
    async with contextlib.AsyncExitStack() as stack:
        for rs in sorted(sets, key=lambda r: r.shard):
            await stack.enter_async_context(rs.write_lock)
        yield


async def _pages(
    rs: ReplicaSet, b0: int, b1: int, deadline: float, *, full: bool
) -> AsyncIterator[ScrollPage]:
    """The live rows of buckets [b0, b1) of one shard, page by page, from a live replica."""
    bucket, after = b0, ""
    while True:
        request = ShardScroll(
            after_bucket=bucket, after_id=after, end_bucket=b1, limit=PAGE_ROWS,
            include_metadata=full, include_vectors=full, include_documents=full,
            max_bytes=PAGE_BYTES,
        )

        async def call(shard: ShardLike, timeout: float, req: ShardScroll = request) -> ScrollPage:
            return await shard.scroll(req, timeout)

        page = await rs.read(call, deadline)
        if page.ids:
            yield page
        if page.done:
            return
        bucket, after = page.last_bucket, page.last_id


async def _delete_locked(
    col: CollectionRuntime, shard: int, ids: list[str], deadline: float
) -> None:
    step = 5 * PAGE_ROWS
    for i in range(0, len(ids), step):
        await col.atomic.apply_locked({shard: ShardWrite(delete_ids=ids[i : i + step])}, deadline)


# ---- entry points (ReshardHost) -------------------------------------------------


async def begin(
    runtime: ReshardHost, col: CollectionRuntime, shards: int, replicas: int
) -> Resharder:
    """Start changing `col` to `shards` shards (then `replicas` replicas): persist the change,
    create and place the new shards, and start copying in the background."""
    name = col.spec.name
    old = col.layout.owners
    new = plan_owners(old, shards)
    change = LayoutChange(
        phase=COPYING, old_owners=old.tolist(), new_owners=new.tolist(),
        from_shards=col.layout.shards, target_shards=shards, target_replicas=replicas,
    )
    fresh = range(col.layout.shards, shards)
    for s in fresh:  # nothing of an earlier shard of that number may be reused
        runtime.registry.forget_shard(name, s)
        shutil.rmtree(collection_dir(runtime.data_dir, name) / f"shard-{s:04d}",
                      ignore_errors=True)
    await asyncio.to_thread(runtime.registry.set_change, name, change.to_json())
    resharder = Resharder(runtime, col, change)
    try:
        await open_targets(runtime, col, change, new=True)
    except BaseException:
        await resharder.rollback()
        raise
    resharder.arm()
    # The query fronts know of the copies (a shrink's) before the first one is written.
    await runtime.layout_changed(name)
    resharder.start()
    return resharder


async def open_targets(
    runtime: ReshardHost, col: CollectionRuntime, change: LayoutChange, *, new: bool
) -> None:
    """Create (or reopen, after a restart) the shards a growing change adds."""
    if change.target_shards <= len(col.shard_sets):
        return
    spec = col.spec
    decisions = col.atomic.decisions
    assert isinstance(decisions, CollectionDecisions)
    sets = [
        runtime.replica_set(spec, s, decisions)
        for s in range(len(col.shard_sets), change.target_shards)
    ]
    await runtime.bring_up(sets, new=new)
    col.shard_sets.extend(sets)
    col.reroute()


async def resume(runtime: ReshardHost, col: CollectionRuntime, text: str) -> Resharder:
    """After a restart: finish what a kill left (see the module docstring) before `col` is
    served; a copy goes on in the background."""
    change = LayoutChange.from_json(text)
    resharder = Resharder(runtime, col, change)
    events.layout_event(col.spec.name, f"resuming its layout change (phase {change.phase})")
    if change.phase == COPYING:
        await open_targets(runtime, col, change, new=False)
        resharder.arm()
        resharder.start()
    elif change.phase == ABORTING:
        await resharder.rollback()
        resharder.done.set()
    else:  # CLEANUP: the new layout; moved rows leave the old owners before serving
        col.publish_view(foreign=resharder.change.givers())
        await resharder._retrying("cleanup", resharder._delete_moved)
        resharder.start()
    return resharder
