"""The in-process baselines of the query benchmark: one hnswlib index, and S hnswlib indexes
over the cluster's own hash partition searched and merged in one process (the ideal sharded
system: the cluster's work minus every RPC, copy and Python hop)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import hnswlib
import numpy as np
import numpy.typing as npt

from shardvec.bench.measure import recall_at_k
from shardvec.coordinator.layout import Layout
from shardvec.coordinator.queries.merge import merge_topk

Search = Callable[[int], npt.NDArray[np.int64]]


def build_index(
    vectors: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    *,
    m: int,
    ef_construction: int,
    threads: int,
) -> Any:
    index = hnswlib.Index(space="cosine", dim=int(vectors.shape[1]))
    index.init_index(max_elements=max(1, len(vectors)), M=m, ef_construction=ef_construction)
    index.add_items(vectors, labels, num_threads=threads)
    return index


class SingleIndex:
    """One hnswlib index over every row: batch knn_query with `threads` threads."""

    def __init__(
        self, base: npt.NDArray[np.float32], *, m: int, ef_construction: int, threads: int
    ) -> None:
        start = time.perf_counter()
        self.index = build_index(
            base, np.arange(len(base)), m=m, ef_construction=ef_construction, threads=threads
        )
        self.build_s = time.perf_counter() - start
        self.threads = threads

    def search(self, queries: npt.NDArray[np.float32], k: int, ef: int) -> npt.NDArray[np.int64]:
        self.index.set_ef(max(ef, k))
        labels, _ = self.index.knn_query(queries, k=k, num_threads=self.threads)
        return np.asarray(labels, dtype=np.int64)


class InProcessShards:
    """S hnswlib indexes over `Layout.initial(S).partition` of ids str(row), searched one
    after another with `threads` threads each, merged with `coordinator.merge.merge_topk`."""

    def __init__(
        self,
        base: npt.NDArray[np.float32],
        shards: int,
        *,
        m: int,
        ef_construction: int,
        threads: int,
    ) -> None:
        start = time.perf_counter()
        parts = Layout.initial(shards).partition([str(i) for i in range(len(base))])
        self.sizes = [len(rows) for rows in parts]
        self.indexes = [
            build_index(
                base[rows], rows.astype(np.int64), m=m, ef_construction=ef_construction,
                threads=threads,
            )
            for rows in parts
        ]
        self.build_s = time.perf_counter() - start
        self.threads = threads

    @classmethod
    def over(cls, single: SingleIndex, n: int) -> InProcessShards:
        """One shard: the single index itself (1-shard partition = every row, in order)."""
        self = cls.__new__(cls)
        self.sizes, self.indexes = [n], [single.index]
        self.build_s, self.threads = 0.0, single.threads
        return self

    def search(
        self, queries: npt.NDArray[np.float32], k: int, k_shard: int, ef: int
    ) -> npt.NDArray[np.int64]:
        """Each shard's best k_shard at breadth max(ef, k_shard), merged to the best k."""
        labels, scores = [], []
        for index, size in zip(self.indexes, self.sizes, strict=True):
            kq = min(k_shard, size)
            index.set_ef(max(ef, kq))
            got, dist = index.knn_query(queries, k=kq, num_threads=self.threads)
            labels.append(np.asarray(got, dtype=np.int64))
            scores.append(1.0 - dist)
        ids, _, _ = merge_topk(labels, scores, k, higher_is_better=True)
        return np.asarray(ids, dtype=np.int64)


def best_qps(run: Callable[[], Any], n: int, reps: int) -> float:
    """Queries per second of the fastest of `reps` runs of `run` (n queries each)."""
    best = math.inf
    for _ in range(reps):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return n / best


def sweep(
    search: Search, gt: npt.NDArray[np.int64], k: int, efs: list[int], reps: int, n: int
) -> list[dict[str, float]]:
    """Recall@k and best-of-`reps` QPS at each ef."""
    out = []
    for ef in efs:
        found = search(ef)
        qps = best_qps(partial(search, ef), n, reps)
        out.append({"ef": ef, "recall": recall_at_k(found, gt, k), "qps": qps})
    return out


def min_ef(
    recall_of: Callable[[int], float], target: float, lo: int, hi: int
) -> tuple[int | None, float]:
    """The smallest ef in [lo, hi] whose recall reaches `target` (binary search; recall grows
    with ef), with that recall; (None, recall at hi) when even hi falls short."""
    top = recall_of(hi)
    if top < target:
        return None, top
    best = (hi, top)
    while lo < hi:
        mid = (lo + hi) // 2
        r = recall_of(mid)
        if r >= target:
            hi, best = mid, (mid, r)
        else:
            lo = mid + 1
    return best
