"""The search planner of one replica: which path serves a batch, and the score threshold.

With m the number of live rows passing the filter, L all live rows and s = m / L:
  m == 0                          -> empty rows
  exact=True, or exact is cheaper -> exact NumPy scoring of the m rows (shard/exact.py)
  otherwise                       -> one unfiltered batch knn_query for k' = ceil(k * overfetch
                                     / s) results at breadth ef / s (so ~ef candidates pass),
                                     then the mask
Any query left with fewer than min(k, m) hits falls back to hnswlib's filtered search, then to
exact scoring, so a filtered search never returns fewer than min(k, m) hits (before min_score /
max_distance drop some).

Which is cheaper comes from measured costs (bench/planner.py, BENCHMARKS.md):
exact scoring (the int8 scan of shard/compact.py and the rescoring of shard/exact.py) costs
about `exact_row_cost` seconds per row and dimension for a single query (2.6e-10: 2.4 ms for
a 10 % subset of 250k x 384 rows) and `exact_batch_row_cost` per query of a batch (4.0e-11),
measured by bench/planner_exact.py with one BLAS thread, as a replica runs, at 100k and 250k
rows (2.2 to 2.9e-10 and 2.8 to 4.4e-11 over subsets and whole shards; 5.2e-10 and 2.9e-11
were the float32 copy's). These are constants, not calibrated when a replica starts: the cost
per row and dimension is the code's and the CPU's, the same from 25k to 250k rows, while a
timed scan at start-up on a shared box measured the contention of the moment (2 to 10x
spreads on the 2-core machine, where every replica of a node starts at once) and would keep
it for the replica's life. The widened HNSW search, whose cost does depend on the shard's
size and breadth, costs the replica's own unfiltered search time per query, measured as it
serves (a moving average), over s^0.75 (fit at 25k and 100k rows, 1 to 60 % selectivity).
Post-filtering beat hnswlib's filter callback at every selectivity measured, so the callback
serves only the queries post-filtering left short.
Setting `exact_threshold` or `postfilter_fraction` forces the fixed rules of earlier versions
(m <= exact_threshold: exact; s >= postfilter_fraction: post-filter, else the callback), as the
benchmark does to time each path alone.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from shardvec.shard.exact import exact_topk, to_scores
from shardvec.shard.index import Floats, HnswIndex, Labels
from shardvec.shard.rowdata import RowData


@dataclass(frozen=True)
class PlannerSettings:
    """Thresholds of the filtered-search planner (see the module docstring)."""

    exact_threshold: int | None = None  # None: by measured cost
    postfilter_fraction: float | None = None  # None: post-filter, the callback as a fallback
    overfetch: float = 1.5
    exact_chunk_rows: int = 16_384
    exact_row_cost: float = 2.6e-10  # s per row x dimension, one query
    exact_batch_row_cost: float = 4.0e-11  # s per row x dimension per query of a batch
    hnsw_query_cost: float = 3e-4  # s per unfiltered query until the replica has measured its own
    selectivity_exponent: float = 0.75


class SearchPlanner:
    """Plans and runs one batch over a consistent view of a replica's index and slots.

    The caller holds the index's read side for the whole call; `rows` holds the vectors that
    exact scoring reads.
    """

    def __init__(
        self,
        settings: PlannerSettings,
        metric: str,
        search_threads: int,
        rows: RowData,
    ) -> None:
        self.settings = settings
        self._metric = metric
        self._search_threads = search_threads
        self._rows = rows
        # a moving average of the unfiltered searches this replica has served
        self.hnsw_query_cost: float = settings.hnsw_query_cost

    def threads_for(self, nq: int) -> int:
        """hnswlib threads for a batch of `nq` queries: one per 32 queries, at most
        `search_threads` (hnswlib starts its threads on every call; a few queries would
        spend longer starting them than searching)."""
        return max(1, min(self._search_threads, nq // 32))

    def search(
        self,
        index: HnswIndex,
        q: Floats,
        k: int,
        ef: int,
        *,
        alive: npt.NDArray[np.bool_],
        n_live: int,
        mask: npt.NDArray[np.bool_] | None,
        exact: bool,
    ) -> tuple[Labels, Floats]:
        """Labels (-1 padding) and user scores (NaN padding) of the best `k` per query.

        `alive` marks live slots, `n_live` counts them, and `mask` (a subset of `alive`) marks
        the rows passing the filter, None without one.
        """
        nq = len(q)
        m = int(mask.sum()) if mask is not None else n_live
        labels = np.full((nq, k), -1, dtype=np.int64)
        scores = np.full((nq, k), np.nan, dtype=np.float32)
        if m == 0:
            return labels, scores
        subset = mask if mask is not None else alive
        if exact or (mask is not None and self._exact_is_cheaper(nq, m, n_live, len(q[0]))):
            return self._exact(q, k, np.flatnonzero(subset), len(alive))
        k_eff = min(k, m)
        metric = self._metric
        todo = np.arange(nq)
        fraction = self.settings.postfilter_fraction
        if mask is None or fraction is None or m / n_live >= fraction:
            # One batch search. With a filter, over-fetch k by the passing fraction, and widen
            # ef by it too so ~ef candidates pass, as in hnswlib's own filtered search.
            kq, breadth = k_eff, ef
            if mask is not None:
                kq = math.ceil(k_eff * self.settings.overfetch * n_live / m)
                breadth = math.ceil(ef * n_live / m)
            started = time.perf_counter()
            try:
                threads = self.threads_for(nq)
                got, dist = index.knn(q, min(kq, n_live), min(breadth, n_live), threads)
            except RuntimeError:  # a query found too few points: every row falls back
                got, dist = np.zeros((nq, 0), dtype=np.int64), np.zeros((nq, 0), dtype=np.float32)
            if mask is None:
                per_query = (time.perf_counter() - started) / nq
                self.hnsw_query_cost = 0.9 * self.hnsw_query_cost + 0.1 * per_query
            if mask is None and got.shape[1]:  # the common case, kept lean
                labels[:, :k_eff] = got[:, :k_eff]
                scores[:, :k_eff] = to_scores(metric, dist[:, :k_eff])
                todo = todo[:0]
            else:
                keep = mask[got] if mask is not None else np.ones(got.shape, dtype=np.bool_)
                order = np.argsort(~keep, axis=1, kind="stable")[:, :k_eff]
                sel, w = np.take_along_axis(keep, order, axis=1), order.shape[1]
                labels[:, :w] = np.where(sel, np.take_along_axis(got, order, axis=1), -1)
                best = to_scores(metric, np.take_along_axis(dist, order, axis=1))
                scores[:, :w] = np.where(sel, best, np.nan)
                todo = np.flatnonzero(keep.sum(axis=1) < k_eff)
        if len(todo) and mask is not None:
            allowed = mask.tolist().__getitem__
            short = []
            for row in todo.tolist():
                try:
                    got, dist = index.knn(q[row : row + 1], k_eff, min(ef, m), 1, allowed)
                except RuntimeError:
                    short.append(row)
                    continue
                labels[row, :k_eff] = got[0, :k_eff]
                scores[row, :k_eff] = to_scores(metric, dist[0, :k_eff])
            todo = np.asarray(short, dtype=np.int64)
        if len(todo):
            labels[todo], scores[todo] = self._exact(q[todo], k, np.flatnonzero(subset), len(alive))
        return labels, scores

    def _exact_is_cheaper(self, nq: int, m: int, n_live: int, dim: int) -> bool:
        """Exact scoring of `m` of `n_live` rows against the widened HNSW search, per query."""
        s = self.settings
        if s.exact_threshold is not None:
            return m <= s.exact_threshold
        row_cost = s.exact_row_cost if nq == 1 else s.exact_batch_row_cost
        exact = m * dim * row_cost
        hnsw = self.hnsw_query_cost / (m / n_live) ** s.selectivity_exponent
        return bool(exact <= hnsw)

    def _exact(self, q: Floats, k: int, slots: Labels, n_slots: int) -> tuple[Labels, Floats]:
        chunk = self.settings.exact_chunk_rows
        return exact_topk(self._rows, self._metric, q, slots, k, chunk, n_slots=n_slots)


def drop_past_threshold(
    labels: Labels,
    scores: Floats,
    metric: str,
    min_score: float | None,
    max_distance: float | None,
) -> None:
    """Blank (label -1, score NaN), in place, the hits scoring below min_score or, under
    euclidean, farther than max_distance; the threshold is assumed checked."""
    if metric == "euclidean":
        if max_distance is None:
            return
        passing = scores <= float(max_distance)
    else:
        if min_score is None:
            return
        passing = scores >= float(min_score)
    labels[~passing] = -1
    scores[~passing] = np.nan
