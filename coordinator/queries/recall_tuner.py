"""The recall tuner: each collection's search breadth set by measurement, to hold its target.

A search without an `ef` is only as good as the per-shard breadth it gets; a breadth fitted
once goes stale as a shard grows (coordinator/queries/reads.py per_shard_ef). So the
coordinator measures: in the background, for each collection, it

1. samples queries: the collection's recent live queries (a ring buffer the search path
   fills, coordinator/queries/recent.py) and probes drawn from its own rows (rows at random
   routing-bucket positions, read through the normal Scroll path; each probe is the blend
   w*a + (1-w)*b of two such rows, w uniform in [0.6, 0.9]: on the shared 100k set such
   probes meet a per-shard index with the recall real queries meet, within 0.006 at ef 10 to
   32, where blends at [0.5, 0.8] were 0.02-0.05 harder and rows plus noise up to 0.035 off);
2. scores them exactly, once (exact=True, through the same read view and fan-out as any
   search);
3. searches a ladder of per-shard ef values from the breadth in force (galloping, then
   bisecting), measuring the sample at each rung it tries with that ef, for the smallest
   rung whose recall@10 holds the target with a margin: mean - z * stderr >= target
   (z = `margin_z`). A rung's hits that beat the exact answers' k-th yet are not among them
   are rows written since the exact pass, and join the truth (`truth_with_new_rows`).

Every step is a search whose wall time is measured; the next step waits so that the tuner's
work is at most `cpu_share` of the wall time (25 % by default; one pause is at most
`max_pause_s`). A tune falls due when the collection has `min_rows` rows and none was made
yet, its rows changed by more than `retune_change` (10 %) since the last tune, its layout
version or shard count changed (a reshard), or its target changed. A due tune waits until the
rows have been still for `quiet_s` (10 s; a load has finished), at most `max_wait_s` (300 s),
so it measures the data the load leaves on an idle cluster; a tune the data outruns (rows
moved by more than 0.5 % during it, or 10 % for one a never-ending load forced) or a reshard
switches under is abandoned and started afresh (one the load outran is forced again only
`max_wait_s` later, while the rows keep moving). The breadth is set on the collection
(`CollectionReads.tuned`) and pushed to the query fronts through the layout-change hook;
below `min_rows` a collection goes back to the static rule.

A breadth that stands (tuned on still rows, not provisional) is handed to `persist` (the
coordinator's registry, coordinator/registry.py); a restarted coordinator opens each
collection with it, so searches without `ef` keep it, and this tuner, starting with no
history, tunes again only when `due` finds it stale by the same rule as any other tune (the
rows moved by more than `retune_change`, a reshard, a new target).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from shardvec.contract.buckets import NUM_BUCKETS
from shardvec.contract.types import Hits, TunedBreadth
from shardvec.coordinator.queries.reads import (
    CollectionReads,
    SearchParams,
    per_shard_ef,
    per_shard_k,
)
from shardvec.coordinator.queries.scroll import scroll_collection
from shardvec.coordinator.replicas.shard_client import being_cancelled

log = logging.getLogger(__name__)

RECALL_K = 10  # the tuner holds recall@10
# Per-shard ef values the tuner may choose, smallest first.
LADDER = (10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 256,
          320, 384, 512, 768, 1024)  # fmt: skip
STEP_DEADLINE_S = 60.0
T = TypeVar("T")


@dataclass(frozen=True)
class TunerSettings:
    """How the recall tuner samples and how much it may spend."""

    interval_s: float = 2.0  # how often row counts, layouts and targets are checked
    cpu_share: float = 0.25  # the tuner's searches take at most this share of wall time
    probes: int = 200  # probe queries drawn from the collection's rows
    live: int = 64  # recent live queries added to the sample, at most
    # With at least this many live queries in the sample, a rung must hold the target on them
    # too, not only on the probes (probes can be easier than the users' queries).
    min_live: int = 8
    margin_z: float = 1.64  # the held recall is mean - z * stderr (one-sided 95 %)
    retune_change: float = 0.10  # retune when rows changed by more than this fraction
    min_rows: int = 1_000  # below: no tune, the static rule (HNSW is near exact there)
    # A due tune waits until the rows have not moved by more than `settle_change` between
    # two checks for `quiet_s` (a load has finished), but no longer than `max_wait_s` after
    # it fell due (a load that never ends is tuned meanwhile).
    settle_change: float = 0.005
    quiet_s: float = 10.0
    max_wait_s: float = 300.0
    max_pause_s: float = 60.0  # the longest pause after one step
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.cpu_share <= 1.0:
            raise ValueError(f"cpu_share must be in (0, 1], got {self.cpu_share}")
        if self.interval_s <= 0 or self.probes < 1 or self.live < 0 or self.margin_z < 0:
            raise ValueError("interval_s must be > 0, probes >= 1, live >= 0, margin_z >= 0")


def recall_per_query(found: np.ndarray, truth: np.ndarray, truth_counts: np.ndarray) -> np.ndarray:
    """Per query, the share of its exact top-k (`truth`, `truth_counts` real hits per row)
    that `found` holds."""
    out = np.ones(len(truth), dtype=np.float64)
    for i in range(len(truth)):
        n = int(truth_counts[i])
        if n:
            out[i] = len(set(truth[i, :n].tolist()) & set(found[i].tolist())) / n
    return out


# How much better than the exact answers' k-th a hit must score to be taken for a row written
# after them: the approximate search's distances (hnswlib's) and the exact pass's may differ
# in the last bits, and a row that was there but ranked just past k must not pass for new.
NEW_ROW_MARGIN = 1e-5


def truth_with_new_rows(
    exact: Hits, found: Hits, k: int, higher_is_better: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The exact top-`k` (ids, counts) over the rows as they were when `found` was searched,
    as far as `found` shows it. `exact` was taken over the rows of an earlier moment, every
    one of them scored; so a hit of `found` that is not among its answers yet scores better
    than their k-th (any score, where they hold fewer than k) can only be a row written since,
    and it joins them: the truth is the best `k` of both.

    Rows written since that the search missed stay unknown, so over moving rows the recall
    measured against this is high by at most the share of new rows times the miss rate (5 %
    new rows at a 5 % miss rate: 0.25 %). Counting every new row the search found as a miss,
    as plain exact answers do, is low by the whole share of new rows, which a tune over a
    running load cannot afford (at 910k of 1M loading rows, ef 1024 measured 0.928), and
    taking the exact answers again before each rung made a tune forced during a load cost an
    exact pass over every row per rung."""
    sign = 1.0 if higher_is_better else -1.0
    nq = len(exact.ids)
    ids = np.full((nq, k), "", dtype=object)
    counts = np.zeros(nq, dtype=np.int64)
    for q in range(nq):
        n = int(exact.counts[q])
        best = [(sign * float(s), i) for s, i in zip(exact.scores[q, :n], exact.ids[q, :n],
                                                     strict=True)]  # fmt: skip
        bar = -math.inf
        if n >= k:
            kth = min(s for s, _ in best)
            bar = kth + NEW_ROW_MARGIN * max(1.0, abs(kth))
        known = {i for _, i in best}
        for j in range(int(found.counts[q])):
            i, s = found.ids[q, j], sign * float(found.scores[q, j])
            if i not in known and s > bar:
                best.append((s, i))
                known.add(i)
        best.sort(key=lambda t: -t[0])
        top = [i for _, i in best[:k]]
        ids[q, : len(top)] = top
        counts[q] = len(top)
    return ids, counts


def held_recall(recalls: np.ndarray, z: float) -> float:
    """The recall the sample supports with a margin: mean - z * standard error."""
    if not len(recalls):
        return 0.0
    stderr = float(np.std(recalls)) / math.sqrt(len(recalls)) if len(recalls) > 1 else 0.0
    return float(np.mean(recalls)) - z * stderr


async def smallest_holding(
    ladder: tuple[int, ...], start: int, holds: Callable[[int], Awaitable[bool]]
) -> int:
    """The index of the smallest rung of `ladder` at which `holds` (recall grows with ef),
    searched from `start`: galloping down while rungs hold (1, 2, 4, ... below), or up until
    one holds, then bisecting between the last rung that failed and the first that held, so
    a breadth 8 rungs away costs about 6 measurements, not 8; the top rung when none holds.
    No rung is asked twice."""
    top = len(ladder) - 1
    step = 1
    if await holds(start):
        hi = start  # holds
        while True:
            if hi == 0:
                return 0
            cand = max(0, hi - step)
            if not await holds(cand):
                lo = cand
                break
            hi, step = cand, step * 2
    else:
        lo = start  # fails
        while True:
            if lo == top:
                return top
            cand = min(top, lo + step)
            if await holds(cand):
                hi = cand
                break
            lo, step = cand, step * 2
    while hi - lo > 1:  # lo fails, hi holds
        mid = (lo + hi) // 2
        if await holds(mid):
            hi = mid
        else:
            lo = mid
    return hi


def start_rung(col: CollectionReads, shards: int) -> int:
    """Where the ladder search starts: the breadth in force (tuned, or the static rule)."""
    k_shard = per_shard_k(RECALL_K, shards, False)
    tuned = col.tuned if col.tuned is not None and col.tuned.shards == shards else None
    ef = per_shard_ef(None, col.spec.index.ef, k_shard, shards, False, False, tuned)
    ef = ef or col.spec.index.ef
    return min(bisect.bisect_left(LADDER, ef), len(LADDER) - 1)


class RecallTuner:
    """Tunes every collection's breadth in the background (module docstring)."""

    def __init__(
        self,
        collections: Callable[[], Mapping[str, CollectionReads]],
        changed: Callable[[str], Awaitable[None]],
        settings: TunerSettings | None = None,
        persist: Callable[[str, TunedBreadth | None], None] | None = None,
    ) -> None:
        self._collections = collections
        self._changed = changed  # the layout-change hook: pushes the breadth to the fronts
        self._persist = persist  # where a breadth that stands is kept across restarts
        self.settings = settings or TunerSettings()
        self.busy_s = 0.0  # wall time spent in the tuner's searches
        self.tunes = 0
        self._last_rows: dict[str, int] = {}  # rows at the previous check
        self._moved_at: dict[str, float] = {}  # when the rows last moved (a load running)
        self._due_since: dict[str, float] = {}  # when a tune fell due and waited for quiet
        # Collections last tuned while their rows moved (a load that outlasted max_wait_s):
        # tuned again once the rows are still.
        self._provisional: set[str] = set()
        self._owed = 0.0  # the pause the last step left, from _owed_from
        self._owed_from = 0.0

    async def run(self) -> None:
        """Check every collection each interval, for the coordinator's life: a round that
        fails is logged, never the end of tuning."""
        while True:
            try:
                await self.check_all()
            except Exception:
                log.exception("recall tuner: a round failed; the next in %.0f s",
                              self.settings.interval_s)
            await asyncio.sleep(self.settings.interval_s)

    async def check_all(self) -> None:
        collections = dict(self._collections())
        for held in (self._last_rows, self._moved_at, self._due_since):
            for gone in [n for n in held if n not in collections]:  # dropped
                del held[gone]
        self._provisional &= set(collections)
        for name, col in collections.items():
            try:
                await self.check(name, col, wait=True)
            except asyncio.CancelledError:
                if being_cancelled():  # the coordinator stops
                    raise
                # Not this task's cancellation: something it awaited was cancelled under it
                # (a collection dropped mid-tune). Once this ended the tuner for good.
                log.info("recall tuner: %s not tuned now: a call it made was cancelled", name)
            except Exception as exc:  # a shard down, the collection dropped: next round
                log.info("recall tuner: %s not tuned now: %s", name, exc)

    def due(self, col: CollectionReads, rows: int) -> bool:
        """Whether `col` (with `rows` rows) needs a tune: none yet, or its rows, layout or
        target changed since the last."""
        t = col.tuned
        if rows < self.settings.min_rows:
            return False
        if t is None:
            return True
        return (
            t.layout_version != col.layout.version
            or t.shards != col.layout.shards
            or t.target != col.spec.target_recall
            or abs(rows - t.rows) > self.settings.retune_change * max(t.rows, 1)
        )

    async def check(self, name: str, col: CollectionReads, wait: bool = False
                    ) -> TunedBreadth | None:  # fmt: skip
        """Tune `col` when it is due; returns the new breadth (None: not due, or not now).
        With `wait`, a due tune waits while a load runs (see TunerSettings.settle_change)."""
        rows = await col.count(None, time.monotonic() + STEP_DEADLINE_S)
        previous = self._last_rows.get(name)
        self._last_rows[name] = rows
        if rows < self.settings.min_rows and col.tuned is not None:
            col.tuned = None  # back to the static rule
            await self._changed(name)
            await self._keep(name, None)
            return None
        if not (self.due(col, rows) or name in self._provisional):
            self._due_since.pop(name, None)
            return None
        now = time.monotonic()
        since = self._due_since.setdefault(name, now)
        if previous is None or abs(rows - previous) > self.settings.settle_change * max(
            previous, 1
        ):
            self._moved_at[name] = now
        quiet = now - self._moved_at.get(name, now) >= self.settings.quiet_s
        if wait and not quiet and now - since < self.settings.max_wait_s:
            return None
        # Started on still rows, a tune stands only if they stay still; one forced by a load
        # that does not end stands unless the load outruns it.
        s = self.settings
        tuned = await self.tune(
            name, col, rows, s.settle_change if wait and quiet else s.retune_change,
            forced=wait and not quiet,
        )
        if tuned is not None:
            self._due_since.pop(name, None)
            if quiet or not wait:
                self._provisional.discard(name)
            else:
                self._provisional.add(name)
            # a provisional breadth is tuned again here; after a restart, none is kept
            await self._keep(name, None if name in self._provisional else tuned)
        elif wait and not quiet:
            # A forced tune the load outran: while the load goes on, the next is forced
            # max_wait_s from now, not at the next round. Tried again at once, a tune outrun
            # every time took the tuner's whole share for as long as the load ran (18 % of a
            # replica's CPU during a 1M load, its exact passes taken again and again over
            # moving rows). Once the rows are still, the wait does not apply.
            self._due_since[name] = time.monotonic()
        return tuned

    async def _keep(self, name: str, tuned: TunedBreadth | None) -> None:
        """Hand `tuned` to `persist` (off the event loop: it commits to SQLite); a failure
        costs only a tune after a restart, so it is logged, not raised."""
        if self._persist is None:
            return
        try:
            await asyncio.to_thread(self._persist, name, tuned)
        except Exception as exc:
            log.warning("recall tuner: could not keep the breadth of %s: %s", name, exc)

    async def tune(
        self,
        name: str,
        col: CollectionReads,
        rows: int,
        outrun: float | None = None,
        forced: bool = False,
    ) -> TunedBreadth | None:
        """Measure `col`'s recall on a fresh sample and set the smallest breadth holding its
        target; returns it (None: abandoned, the rows changed by more than `outrun`
        (default retune_change) meanwhile, or a reshard switched; the next round starts
        afresh). A `forced` tune (a load outlasted max_wait_s) is also abandoned once its
        steps have seen the rows still for quiet_s: the load has ended, and the next round
        tunes the still rows at once, rather than after this provisional tune's remaining
        steps and then a whole tune again (at 1M rows, a load of 408 s ended 95 s before
        its tune was in force)."""
        s = self.settings
        outrun = s.retune_change if outrun is None else outrun
        seen_rows, moved_at = rows, self._moved_at.get(name, time.monotonic())
        log.debug("recall tuner: tuning %s at %d rows", name, rows)
        layout = col.layout
        target = col.spec.target_recall
        sample, n_live = await self._paced(lambda: self.sample(col), "sample")

        # One exact pass; rows written after it are recognised in each rung's answers
        # (truth_with_new_rows), not scored exactly again.
        exact = await self._paced(lambda: col.search(
            sample, SearchParams(k=RECALL_K, exact=True), time.monotonic() + STEP_DEADLINE_S
        ), "exact pass")  # fmt: skip
        measured: dict[int, float] = {}

        async def holds(i: int) -> bool:
            nonlocal seen_rows, moved_at
            await self._pause()  # before the count, so a move during the pause is seen
            now_rows = await col.count(None, time.monotonic() + STEP_DEADLINE_S)
            if abs(now_rows - rows) > outrun * max(rows, 1):
                raise _Outrun()
            now = time.monotonic()
            if now_rows != seen_rows:
                seen_rows, moved_at = now_rows, now
            elif forced and now - moved_at >= s.quiet_s:
                # What check() would have seen: the rows last moved at moved_at.
                self._last_rows[name], self._moved_at[name] = now_rows, moved_at
                raise _Settled()
            hits = await self._paced(lambda: col.search(
                sample, SearchParams(k=RECALL_K, ef=LADDER[i]),
                time.monotonic() + STEP_DEADLINE_S,
            ), f"rung ef {LADDER[i]}")  # fmt: skip
            truth, counts = truth_with_new_rows(exact, hits, RECALL_K, col.higher_is_better)
            recalls = recall_per_query(hits.ids, truth, counts)
            parts = [recalls[n_live:]] + ([recalls[:n_live]] if n_live >= s.min_live else [])
            measured[i] = min(float(np.mean(p)) for p in parts if len(p))
            return all(held_recall(p, s.margin_z) >= target for p in parts if len(p))

        try:
            rung = await smallest_holding(LADDER, start_rung(col, layout.shards), holds)
        except _Outrun:
            log.info("recall tuner: %s changed by more than %.1f %% while tuned; again later",
                     name, 100 * outrun)
            return None
        except _Settled:
            log.info("recall tuner: %s: the load ended during a forced tune; tuned again on "
                     "the still rows", name)
            return None
        tuned = TunedBreadth(
            ef=LADDER[rung],
            shards=layout.shards,
            recall=measured[rung],
            queries=len(sample),
            rows=rows,
            layout_version=layout.version,
            target=target,
            tuned_unix=time.time(),
        )
        if col.layout.version != layout.version:  # a reshard switched meanwhile: next round
            return None
        col.tuned = tuned
        self.tunes += 1
        log.info(
            "recall tuner: %s at %d rows over %d shards: per-shard ef %d, recall@%d %.4f on "
            "%d queries (target %.3f)", name, rows, layout.shards, tuned.ef, RECALL_K,
            tuned.recall, tuned.queries, target,
        )
        await self._changed(name)
        return tuned

    async def sample(self, col: CollectionReads) -> tuple[np.ndarray, int]:
        """The queries a tune measures: recent live ones, then probes from the rows; and how
        many are live."""
        s = self.settings
        live = col.recent.snapshot()
        if live.shape[0] and live.shape[1] == col.dim:
            live = live[-s.live:] if s.live else live[:0]
        else:
            live = np.empty((0, col.dim), dtype=np.float32)
        probes = await self.probes(col, s.probes)
        both = np.ascontiguousarray(np.concatenate([live, probes]), dtype=np.float32)
        return both, len(live)

    async def probes(self, col: CollectionReads, n: int) -> np.ndarray:
        """`n` probe queries: blends of two rows each, read at random bucket positions."""
        rng = np.random.default_rng([self.settings.seed, self.tunes])
        starts = rng.integers(0, NUM_BUCKETS, size=n)
        deadline = time.monotonic() + STEP_DEADLINE_S

        async def pair(bucket: int) -> np.ndarray | None:
            pages, _ = await scroll_collection(
                col, (int(bucket), ""), NUM_BUCKETS, 2, None, False, True, 1 << 20, deadline
            )
            vectors = [p.vectors for p in pages if p.ids and p.vectors is not None]
            rows = np.concatenate(vectors) if vectors else np.empty((0, col.dim))
            return rows[:2].astype(np.float32) if len(rows) >= 2 else None

        found = [v for v in await asyncio.gather(*(pair(b) for b in starts)) if v is not None]
        if not found:
            return np.empty((0, col.dim), dtype=np.float32)
        pairs = np.stack(found)
        a, b = pairs[:, 0], pairs[:, 1]
        w = rng.uniform(0.6, 0.9, size=(len(a), 1)).astype(np.float32)
        blend: np.ndarray = (w * a + (1 - w) * b).astype(np.float32)
        if col.spec.index.metric == "cosine":
            norms = np.linalg.norm(blend, axis=1, keepdims=True)
            blend = (blend / np.where(norms > 0, norms, 1)).astype(np.float32)
        return blend

    async def _pause(self) -> None:
        """Wait out what is left of the pause the previous step owes."""
        await asyncio.sleep(max(0.0, self._owed - (time.monotonic() - self._owed_from)))

    async def _paced(self, work: Callable[[], Awaitable[T]], what: str = "step") -> T:
        """Run one step (started, deadline and all, after the pause the previous one left
        owed), so steps take at most cpu_share of the wall time; a tune's result is set
        without waiting out its last pause."""
        await self._pause()
        t0 = time.monotonic()
        result = await work()
        spent = time.monotonic() - t0
        self.busy_s += spent
        self._owed = min(spent * (1.0 / self.settings.cpu_share - 1.0), self.settings.max_pause_s)
        self._owed_from = time.monotonic()
        log.debug("recall tuner: %s took %.2f s; pause %.2f s", what, spent, self._owed)
        return result


class _Outrun(Exception):
    """The collection changed too much during a tune for its measurement to stand."""


class _Settled(Exception):
    """The load that forced a tune ended during it: the still rows are tuned afresh."""

