"""Exact top-k scoring in NumPy, and hnswlib distances turned into user scores."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from shardvec.shard.index import Floats, Labels
from shardvec.shard.rowdata import RowData


def exact_topk(
    rows: RowData,
    metric: str,
    queries: Floats,
    slots: Labels,
    k: int,
    chunk_rows: int = 16_384,
    *,
    n_slots: int | None = None,
) -> tuple[Labels, Floats]:
    """Exact best `k` of `slots` per query, as (labels, user scores), padded with -1 / NaN.

    Vectors come from `rows` (shard/rowdata.py). When `slots` cover at least half of the
    slots below `n_slots`, every chunk of that range is scored in place (views of the
    contiguous array) and the others are masked out; a smaller subset is gathered first.
    Cosine normalises the queries and scales by each row's stored inverse norm. Scores:
    cosine similarity, dot product, or euclidean distance; best first, ties by lower slot.
    """
    nq = len(queries)
    labels = np.full((nq, k), -1, dtype=np.int64)
    scores = np.full((nq, k), np.nan, dtype=np.float32)
    if not len(slots) or not nq:
        return labels, scores
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    dense = n_slots is not None and 2 * len(slots) >= n_slots
    member: npt.NDArray[np.bool_] | None = None
    if dense:
        assert n_slots is not None
        member = np.zeros(n_slots, dtype=np.bool_)
        member[slots] = True
        spans = [
            np.arange(start, min(start + chunk_rows, n_slots))
            for start in range(0, n_slots, chunk_rows)
        ]
    else:
        spans = [slots[start : start + chunk_rows] for start in range(0, len(slots), chunk_rows)]
    best_key = np.zeros((nq, 0), dtype=np.float32)  # lower is better
    best_slot = np.zeros((nq, 0), dtype=np.int64)
    for chunk in spans:
        if dense:
            vecs, norm = rows.scoring_view(int(chunk[0]), int(chunk[-1]) + 1)
        else:
            vecs, norm = rows.scoring_rows(chunk)
        prod = q @ vecs.T
        if metric == "euclidean":
            key = norm[None, :] - 2.0 * prod
        elif metric == "cosine":
            key = -(prod * norm[None, :])
        else:
            key = -prod
        out = ~member[chunk] if member is not None else None
        if out is not None:
            key[:, out] = np.inf
        kc = min(k, len(chunk))
        part = np.argpartition(key, kc - 1, axis=1)[:, :kc] if kc < len(chunk) else None
        if part is None:
            part = np.broadcast_to(np.arange(len(chunk)), (nq, len(chunk)))
        if metric == "euclidean":
            cand = _sq_dist(q, vecs, part)
            if out is not None:
                cand[out[part]] = np.inf
        else:
            cand = np.take_along_axis(key, part, axis=1)
        best_key = np.concatenate([best_key, cand.astype(np.float32)], axis=1)
        best_slot = np.concatenate([best_slot, chunk[part]], axis=1)
        if best_key.shape[1] > k:
            keep = np.argpartition(best_key, k - 1, axis=1)[:, :k]
            best_key = np.take_along_axis(best_key, keep, axis=1)
            best_slot = np.take_along_axis(best_slot, keep, axis=1)
    real = np.isfinite(best_key)
    if metric != "euclidean" and best_key.size:
        # The winners' scores again in float64, so near-ties order as the true scores do
        # (float32 products differ from each other in the last bits).
        best_key = np.where(real, -_scores64(rows, metric, q, best_slot), np.inf)
    order = np.lexsort((best_slot, best_key), axis=1)
    best_key = np.take_along_axis(best_key, order, axis=1)
    best_slot = np.take_along_axis(best_slot, order, axis=1)
    width = best_key.shape[1]
    real = np.isfinite(best_key)
    labels[:, :width] = np.where(real, best_slot, -1)
    if metric == "euclidean":
        scores[:, :width] = np.where(real, np.sqrt(np.maximum(best_key, 0.0)), np.nan)
    else:
        scores[:, :width] = np.where(real, -best_key, np.nan)
    return labels, scores


def _scores64(rows: RowData, metric: str, q: Floats, slots: Labels) -> npt.NDArray[np.float64]:
    """Cosine or dot scores of each query with its candidate `slots`, in float64."""
    vecs = rows.vectors(slots.ravel()).astype(np.float64).reshape(*slots.shape, -1)
    if metric == "cosine":
        norms = np.linalg.norm(vecs, axis=2, keepdims=True)
        vecs = vecs / np.where(norms > 0, norms, 1.0)
    out: npt.NDArray[np.float64] = np.einsum("ijk,ik->ij", vecs, q.astype(np.float64))
    return out


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
