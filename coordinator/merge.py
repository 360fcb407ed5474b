"""Merging per-shard top-k lists into one global top-k, vectorised over the query batch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def merge_topk(
    ids: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    k: int,
    *,
    higher_is_better: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge S per-shard results of shape (nq, k_s) into the best k per query.

    Padding is id "" with score NaN and always sorts last. Returns (ids, scores, counts):
    (nq, k) object and float32 arrays, best first, and the number of real hits per query.
    Ties keep shard order (stable sort), so the merge is deterministic.
    """
    if not ids:
        raise ValueError("merge_topk needs at least one shard result")
    all_ids = np.concatenate(ids, axis=1) if len(ids) > 1 else ids[0]
    all_scores = np.concatenate(scores, axis=1) if len(scores) > 1 else scores[0]
    nq, total = all_scores.shape
    key = all_scores.astype(np.float64, copy=True)
    if higher_is_better:
        key = -key
    key[np.isnan(key)] = np.inf
    width = min(k, total)
    if width < total:
        # Pick the k best in O(total), then sort only those; ties keep column order.
        part = np.sort(np.argpartition(key, width - 1, axis=1)[:, :width], axis=1)
        inner = np.argsort(np.take_along_axis(key, part, axis=1), axis=1, kind="stable")
        order = np.take_along_axis(part, inner, axis=1)
    else:
        order = np.argsort(key, axis=1, kind="stable")
    out_ids = np.take_along_axis(all_ids, order, axis=1)
    out_scores = np.take_along_axis(all_scores, order, axis=1).astype(np.float32, copy=False)
    counts = (~np.isnan(out_scores)).sum(axis=1).astype(np.int32)
    if width < k:
        pad = k - width
        out_ids = np.concatenate([out_ids, np.full((nq, pad), "", dtype=object)], axis=1)
        out_scores = np.concatenate(
            [out_scores, np.full((nq, pad), np.nan, dtype=np.float32)], axis=1
        )
    return out_ids, out_scores, counts
