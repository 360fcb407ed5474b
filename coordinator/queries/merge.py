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
    """`merge_with_payloads` without payloads: (ids, scores, counts)."""
    out = merge_with_payloads(ids, scores, k, higher_is_better=higher_is_better)
    return out[0], out[1], out[2]


def merge_with_payloads(
    ids: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    k: int,
    *,
    higher_is_better: bool,
    payloads: Sequence[Sequence[np.ndarray]] = (),
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Merge S per-shard results of shape (nq, k_s) into the best k per query.

    Padding is id "" with score NaN and always sorts last. Returns (ids, scores, counts,
    payloads): (nq, k) object and float32 arrays, best first, the number of real hits per
    query, and each payload (a per-shard array of shape (nq, k_s, ...), such as the hits'
    metadata texts or vectors) reordered the same way, its padding taken from shard 0's
    padding (zeros or "" past every shard's width). Ties keep shard order (stable sort),
    so the merge is deterministic. Each shard's rows are best first with padding last (the
    engine's contract), so one shard's result with k columns is already the answer.
    """
    if not ids:
        raise ValueError("a merge needs at least one shard result")
    if len(ids) == 1 and ids[0].shape[1] == k:
        one = np.asarray(scores[0], dtype=np.float32)
        counts = (~np.isnan(one)).sum(axis=1).astype(np.int32)
        return ids[0], one, counts, [parts[0] for parts in payloads]
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
    out_payloads = [_take(parts, order) for parts in payloads]
    if width < k:
        pad = k - width
        out_ids = np.concatenate([out_ids, np.full((nq, pad), "", dtype=object)], axis=1)
        out_scores = np.concatenate(
            [out_scores, np.full((nq, pad), np.nan, dtype=np.float32)], axis=1
        )
        out_payloads = [_pad(p, pad) for p in out_payloads]
    return out_ids, out_scores, counts, out_payloads


def _take(parts: Sequence[np.ndarray], order: np.ndarray) -> np.ndarray:
    """A payload's per-shard arrays joined along the hit axis and picked by `order`."""
    joined = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    index = order.reshape(*order.shape, *([1] * (joined.ndim - 2)))
    return np.take_along_axis(joined, index, axis=1)


def _pad(payload: np.ndarray, pad: int) -> np.ndarray:
    shape = (payload.shape[0], pad, *payload.shape[2:])
    fill = np.full(shape, "", dtype=object) if payload.dtype == object else np.zeros(
        shape, dtype=payload.dtype
    )
    return np.concatenate([payload, fill], axis=1)
