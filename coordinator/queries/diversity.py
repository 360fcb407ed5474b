"""Diverse results: maximal marginal relevance (Carbonell and Goldstein, 1998) over the best
`candidates` hits of a search, after the merge.

The search asks for `candidates` hits with their stored vectors (one fan-out over one read
view, merged as any search is: coordinator/queries/reads.py), then picks `k` of them one at a
time, each maximizing

    score(c) = lambda * relevance(c) - (1 - lambda) * max over picked p of similarity(c, p)

where relevance is the hit's own score in the metric's terms, higher better (cosine
similarity, dot product, or minus the euclidean distance), and similarity between two hits
is the same measure between their stored vectors (cosine: of the vectors normalized). The
first pick is the most relevant hit (nothing picked yet, no penalty), ties go to the better
ranked candidate, lambda = 1 is plain relevance order and lambda = 0 picks for novelty alone
after the first. As it runs on the merged candidates only, it is the same at 1 and at 8
shards whenever the candidates are.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from shardvec.contract.groups import Diversity
from shardvec.contract.types import Hits


def similarity(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """(len(a), len(b)) similarities between rows of `a` and `b` in the metric's terms."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if metric == "cosine":
        a64 = a64 / np.maximum(np.linalg.norm(a64, axis=1, keepdims=True), 1e-30)
        b64 = b64 / np.maximum(np.linalg.norm(b64, axis=1, keepdims=True), 1e-30)
        out: np.ndarray = a64 @ b64.T
        return out
    if metric == "dot":
        dots: np.ndarray = a64 @ b64.T
        return dots
    sq = (a64 * a64).sum(1)[:, None] + (b64 * b64).sum(1)[None, :] - 2.0 * (a64 @ b64.T)
    distances: np.ndarray = np.sqrt(np.maximum(sq, 0.0))
    return -distances


def mmr_order(
    relevance: np.ndarray, vectors: np.ndarray, k: int, diversity: float, metric: str
) -> list[int]:
    """Positions of the `k` candidates MMR picks, in pick order (module docstring)."""
    n = len(relevance)
    if n == 0 or k <= 0:
        return []
    sims = similarity(vectors, vectors, metric)
    rel = relevance.astype(np.float64)
    penalty = np.full(n, -np.inf)  # max similarity to a picked hit (-inf: none picked yet)
    free = np.ones(n, dtype=np.bool_)
    picked: list[int] = []
    for _ in range(min(k, n)):
        gain = diversity * rel - (1.0 - diversity) * np.where(np.isinf(penalty), 0.0, penalty)
        gain[~free] = -np.inf
        best = int(np.argmax(gain))  # the first of equal gains: the better ranked
        picked.append(best)
        free[best] = False
        penalty = np.maximum(penalty, sims[:, best])
    return picked


def diversify(
    wide: Hits, k: int, diversity: Diversity, metric: str, keep_vectors: bool
) -> Hits:
    """`wide` (the best `diversity.candidates` per query, with vectors) reduced to `k` hits
    per query in MMR order."""
    assert wide.vectors is not None, "MMR needs the candidates' vectors"
    sign = -1.0 if metric == "euclidean" else 1.0
    orders = [
        mmr_order(sign * wide.scores[qi, : int(wide.counts[qi])],
                  wide.vectors[qi, : int(wide.counts[qi])], k, diversity.diversity, metric)
        for qi in range(len(wide.ids))
    ]  # fmt: skip
    out = wide.pick(orders, k)
    return out if keep_vectors else dataclasses.replace(out, vectors=None)
