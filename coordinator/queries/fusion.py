"""Fusing the two legs of a hybrid search (a vector leg and a keyword leg) into one ranking.

- Reciprocal rank fusion: score(d) = sum over the legs holding d of 1 / (rrf_k + rank), rank
  counted from 1 (Cormack et al. 2009; rrf_k = 60 by default, as Elasticsearch, Qdrant and
  LanceDB use). Scores of different scales never meet: only ranks do.
- Weighted fusion: each leg's scores are min-max normalised to [0, 1] over the candidates it
  returned (the best 1, the worst 0; a leg whose candidates all score alike gives them 1),
  distances turned so that nearer is higher; score(d) = alpha * vector(d) + (1 - alpha) *
  keyword(d), a leg that did not return d adding 0.

Ties are ordered by the best rank the id reached in either leg, then by id, so a fusion is a
pure function of its inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from shardvec.contract.keyword import Fusion
from shardvec.contract.types import Hits

Leg = tuple[Sequence[str], npt.NDArray[np.float32]]  # one query's ids (best first) and scores


def rrf(legs: Sequence[Sequence[str]], k: int, rrf_k: int = 60) -> list[tuple[str, float]]:
    """The top `k` (id, fused score) of ranked id lists by reciprocal rank fusion."""
    score: dict[str, float] = {}
    best: dict[str, int] = {}
    for ids in legs:
        for rank, rid in enumerate(ids, start=1):
            score[rid] = score.get(rid, 0.0) + 1.0 / (rrf_k + rank)
            best[rid] = min(best.get(rid, rank), rank)
    order = sorted(score, key=lambda r: (-score[r], best[r], r))
    return [(r, score[r]) for r in order[:k]]


def normalise(scores: npt.ArrayLike, higher_is_better: bool = True) -> npt.NDArray[np.float64]:
    """Min-max to [0, 1], best 1 (all equal: all 1)."""
    s = np.asarray(scores, dtype=np.float64)
    if not len(s):
        return s
    lo, hi = float(s.min()), float(s.max())
    if hi == lo:
        return np.ones_like(s)
    return (s - lo) / (hi - lo) if higher_is_better else (hi - s) / (hi - lo)


def weighted(
    vector: Leg,
    keyword: Leg,
    k: int,
    alpha: float,
    *,
    vector_higher_is_better: bool = True,
) -> list[tuple[str, float]]:
    """The top `k` (id, fused score) of the two legs by the weighted sum of their normalised
    scores; `alpha` weighs the vector leg, 1 - alpha the keyword leg."""
    score: dict[str, float] = {}
    best: dict[str, int] = {}
    for (ids, raw), weight, hib in (
        (vector, alpha, vector_higher_is_better),
        (keyword, 1.0 - alpha, True),
    ):
        for rank, (rid, value) in enumerate(zip(ids, normalise(raw, hib), strict=True), start=1):
            score[rid] = score.get(rid, 0.0) + weight * float(value)
            best[rid] = min(best.get(rid, rank), rank)
    order = sorted(score, key=lambda r: (-score[r], best[r], r))
    return [(r, score[r]) for r in order[:k]]


def fuse_hits(
    vector: Hits, keyword: Hits, k: int, fusion: Fusion, *, vector_higher_is_better: bool
) -> Hits:
    """Each query's fused top `k` of the two legs' hits, payloads (metadata, vectors,
    documents, asked of both legs alike) taken from the leg that returned the hit."""
    nq = len(vector.ids)
    ids = np.full((nq, k), "", dtype=object)
    scores = np.full((nq, k), np.nan, dtype=np.float32)
    counts = np.zeros(nq, dtype=np.int32)
    payloads = [
        (name, getattr(vector, name), getattr(keyword, name))
        for name in ("metadata", "vectors", "documents")
        if getattr(vector, name) is not None and getattr(keyword, name) is not None
    ]
    out: dict[str, np.ndarray] = {}
    for name, v, _ in payloads:
        shape = (nq, k, *v.shape[2:])
        blank = "" if v.dtype == object else 0
        out[name] = np.full(shape, blank, dtype=v.dtype)
    for q in range(nq):
        legs = []
        where: dict[str, tuple[int, int]] = {}
        for leg_no, hits in enumerate((vector, keyword)):
            n = int(hits.counts[q])
            row = [str(i) for i in hits.ids[q, :n]]
            legs.append((row, np.asarray(hits.scores[q, :n], dtype=np.float32)))
            for col, rid in enumerate(row):
                where.setdefault(rid, (leg_no, col))
        if fusion.method == "rrf":
            fused = rrf([legs[0][0], legs[1][0]], k, fusion.rrf_k)
        else:
            fused = weighted(
                legs[0], legs[1], k, fusion.alpha, vector_higher_is_better=vector_higher_is_better
            )
        counts[q] = len(fused)
        for j, (rid, value) in enumerate(fused):
            ids[q, j], scores[q, j] = rid, value
            leg_no, col = where[rid]
            for name, v, kw in payloads:
                out[name][q, j] = (v if leg_no == 0 else kw)[q, col]
    return Hits(ids, scores, counts, out.get("metadata"), out.get("vectors"), out.get("documents"))
