"""Exact top-k scoring in NumPy, and hnswlib distances turned into user scores."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from shard.index import Floats, Labels


def exact_topk(
    fetch: Callable[[Labels], Floats],
    metric: str,
    queries: Floats,
    slots: Labels,
    k: int,
    chunk_rows: int = 16_384,
) -> tuple[Labels, Floats]:
    """Exact best `k` of `slots` per query, as (labels, user scores), padded with -1 / NaN.

    `fetch(chunk)` returns the vectors at a chunk of slots; chunks of `chunk_rows` keep memory
    bounded, and no copy of the data outlives the call. Cosine normalises queries and vectors.
    Scores: cosine similarity, dot product, or euclidean distance; best first, ties by lower
    slot.
    """
    nq = len(queries)
    labels = np.full((nq, k), -1, dtype=np.int64)
    scores = np.full((nq, k), np.nan, dtype=np.float32)
    if not len(slots) or not nq:
        return labels, scores
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    best_key = np.zeros((nq, 0), dtype=np.float32)  # lower is better
    best_slot = np.zeros((nq, 0), dtype=np.int64)
    for start in range(0, len(slots), chunk_rows):
        chunk = slots[start : start + chunk_rows]
        vecs = fetch(chunk)
        if metric == "cosine":
            vecs = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        prod = q @ vecs.T
        if metric == "euclidean":
            key = np.einsum("ij,ij->i", vecs, vecs)[None, :] - 2.0 * prod
        else:
            key = -prod
        kc = min(k, len(chunk))
        part = np.argpartition(key, kc - 1, axis=1)[:, :kc] if kc < len(chunk) else None
        if part is None:
            part = np.broadcast_to(np.arange(len(chunk)), (nq, len(chunk)))
        if metric == "euclidean":
            cand = _sq_dist(q, vecs, part)
        else:
            cand = np.take_along_axis(key, part, axis=1)
        best_key = np.concatenate([best_key, cand.astype(np.float32)], axis=1)
        best_slot = np.concatenate([best_slot, chunk[part]], axis=1)
        if best_key.shape[1] > k:
            keep = np.argpartition(best_key, k - 1, axis=1)[:, :k]
            best_key = np.take_along_axis(best_key, keep, axis=1)
            best_slot = np.take_along_axis(best_slot, keep, axis=1)
    order = np.lexsort((best_slot, best_key), axis=1)
    best_key = np.take_along_axis(best_key, order, axis=1)
    best_slot = np.take_along_axis(best_slot, order, axis=1)
    width = best_key.shape[1]
    labels[:, :width] = best_slot
    if metric == "euclidean":
        scores[:, :width] = np.sqrt(np.maximum(best_key, 0.0))
    else:
        scores[:, :width] = -best_key
    return labels, scores


def _sq_dist(q: Floats, vecs: Floats, part: npt.NDArray[np.intp]) -> Floats:
    """Squared distances of each query to its candidate rows, computed from differences
    (not the expanded form) so near-zero distances stay exact; blocked to bound memory."""
    nq, kc = part.shape
    out = np.empty((nq, kc), dtype=np.float32)
    step = max(1, (1 << 22) // max(1, kc * q.shape[1]))
    for s in range(0, nq, step):
        diff = vecs[part[s : s + step]] - q[s : s + step, None, :]
        out[s : s + step] = np.einsum("ijk,ijk->ij", diff, diff)
    return out


def to_scores(metric: str, dist: Floats) -> Floats:
    """hnswlib distances to user scores: 1 - d for cosine and dot, sqrt(d) for euclidean."""
    if metric == "euclidean":
        return np.sqrt(np.maximum(dist, 0.0)).astype(np.float32)
    return (1.0 - dist).astype(np.float32)
