"""Recall of a live collection: its approximate answers against its own exact answers, or
against labelled relevant ids, with the latency of the approximate searches.

The approximate searches go one query per request (what a user's single query costs, so the
latency percentiles mean something); the exact answers come in batches with `exact=True`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shardvec.cluster.client import Collection
from shardvec.contract.errors import InvalidArgument

EXACT_BATCH = 256
WORST = 5


@dataclass(frozen=True)
class RecallReport:
    k: int
    against: str  # "exact" or "labels"
    recall: float
    per_query: list[float]
    latency_ms: dict[str, float]  # p50, p95, p99, mean of the approximate searches
    ef: int | None

    def worst(self, n: int = WORST) -> list[tuple[int, float]]:
        """The `n` lowest-recall queries as (row, recall), lowest first."""
        order = np.argsort(np.asarray(self.per_query), kind="stable")[:n]
        return [(int(i), self.per_query[int(i)]) for i in order]

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "against": self.against,
            "recall": self.recall,
            "queries": len(self.per_query),
            "ef": self.ef,
            "worst": [{"query": q, "recall": r} for q, r in self.worst()],
            "latency_ms": self.latency_ms,
        }

    def lines(self) -> list[str]:
        what = "exact search" if self.against == "exact" else "labelled answers"
        ef = f", ef {self.ef}" if self.ef else ""
        out = [f"recall@{self.k}: {self.recall:.4f} over {len(self.per_query)} queries "
               f"(against {what}{ef})", f"worst {min(WORST, len(self.per_query))} queries:"]
        out += [f"  query {q}: recall {r:.3f}" for q, r in self.worst()]
        lat = self.latency_ms
        out.append(
            f"latency ms (approximate, one query per request): p50 {lat['p50']:.2f}  "
            f"p95 {lat['p95']:.2f}  p99 {lat['p99']:.2f}"
        )
        return out


def read_expected(path: Path, n_queries: int) -> list[list[str]]:
    """Labelled answers from JSON Lines: `{"query": row, "ids": [...]}` per line (`query`
    defaults to the line number), relevant ids best first. Every query row needs a line."""
    found: dict[int, list[str]] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(ln for ln in f if ln.strip()):
            try:
                row = json.loads(line)
                q = int(row.get("query", lineno))
                ids = row["ids"]
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise InvalidArgument(f"{path}: line {lineno + 1}: {exc!r}") from None
            if not isinstance(ids, list):
                raise InvalidArgument(f"{path}: line {lineno + 1}: ids must be a list")
            found[q] = [str(i) for i in ids]
    missing = [q for q in range(n_queries) if q not in found]
    if missing:
        raise InvalidArgument(f"{path}: no relevant ids for queries {missing[:10]}")
    return [found[q] for q in range(n_queries)]


def measure_recall(
    col: Collection,
    queries: np.ndarray,
    k: int = 10,
    *,
    where: Mapping[str, Any] | None = None,
    ef: int | None = None,
    expected: Sequence[Sequence[str]] | None = None,
) -> RecallReport:
    """Search every query approximately (timed, one per request) and score the answers
    against the exact top-k, or against the first k of each query's `expected` ids."""
    queries = np.asarray(queries, dtype=np.float32)
    if queries.ndim != 2 or not len(queries):
        raise InvalidArgument(f"queries: expected a non-empty (n, dim) array, got {queries.shape}")
    found: list[list[str]] = []
    seconds: list[float] = []
    for q in queries:
        start = time.perf_counter()
        ids, _ = col.search_ids(q[None, :], k=k, where=where, ef=ef)
        seconds.append(time.perf_counter() - start)
        found.append(ids[0])
    if expected is None:
        truth: list[set[str]] = []
        for s in range(0, len(queries), EXACT_BATCH):
            ids, _ = col.search_ids(queries[s : s + EXACT_BATCH], k=k, where=where, exact=True)
            truth.extend(set(row) for row in ids)
        per_query = [_recall(f, t, k) for f, t in zip(found, truth, strict=True)]
    else:
        if len(expected) != len(queries):
            raise InvalidArgument(f"{len(expected)} labelled answers for {len(queries)} queries")
        per_query = [_recall(f, set(t[:k]), k) for f, t in zip(found, expected, strict=True)]
    ms = np.asarray(seconds) * 1000.0
    latency = {
        "p50": float(np.percentile(ms, 50)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
        "mean": float(ms.mean()),
    }
    return RecallReport(
        k, "exact" if expected is None else "labels", float(np.mean(per_query)), per_query,
        latency, ef,
    )


def _recall(found: Sequence[str], relevant: set[str], k: int) -> float:
    """|found[:k] ∩ relevant| / min(k, |relevant|); 1.0 when nothing is relevant."""
    want = min(k, len(relevant))
    if want == 0:
        return 1.0
    return len(set(found[:k]) & relevant) / want
