"""Exact top-k scoring in NumPy, and hnswlib distances turned into user scores.

Exact scoring scans the compact int8 copy (shard/compact.py) and rescores in float64, from
the float32 values as upserted (shard/row_vectors.py), every row whose approximate key could
reach the k-th best exact key, so the answer is the float64 brute force's:
  1. the scan keeps, per query, the rows whose approximate key is within 2B of the k-th best
     approximate key seen so far (B the query's bound on |approximate - exact|): any other row
     has k rows strictly better than it;
  2. the k best of those by approximate key are rescored; the k-th exact key among them, tau,
     is at least the final k-th best;
  3. every kept row with approximate key <= tau + B is rescored too (any other row's exact key
     is above tau), and the rescored rows are ordered by exact key, ties by lower slot.

A single query (or a few) over many rows, once the codes are rotated, reads the tail of only
some rows in step 1 (shard/compact.py has the basis and the head / tail split):
  a. the head keys of every row give a lower bound on each row's exact key,
     lb = head key - |q_tail| |x_tail| - the head's bound;
  b. the c rows of least lb (c = max(4k, 64)) get their whole approximate keys; the k-th best
     of those plus B is an upper bound U on the k-th best exact key (those k rows are within
     B of their approximate keys);
  c. only rows with lb <= U are read whole: any other row's exact key is above U, so k rows are
     strictly better than it. Among them the rows within 2B of the k-th best approximate key
     are kept, as in step 1 (the k rows that set U are among them, so that k-th best is the
     one over every row).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from shardvec.shard.compact import CompactVectors
from shardvec.shard.index import Floats, Labels
from shardvec.shard.rowdata import RowData

KEY_CELLS = 1 << 22  # approximate keys held at once (queries x rows), 16 MiB
RESCORE_ROWS = 4096  # candidates rescored per float64 block
# The head-first scan (steps a-c) serves batches of at most this many queries (a larger one
# is one BLAS product per block over every row's codes) over at least this many rows.
PRUNE_MAX_QUERIES = 4
PRUNE_MIN_ROWS = 1024


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

    When `slots` cover at least half of the slots below `n_slots`, every block of that range
    is scanned in place and the others are masked out; a smaller subset is gathered. Cosine
    normalises the queries. Scores: cosine similarity, dot product, or euclidean distance;
    best first, ties by lower slot (see the module docstring for how it stays exact).
    """
    nq = len(queries)
    labels = np.full((nq, k), -1, dtype=np.int64)
    scores = np.full((nq, k), np.nan, dtype=np.float32)
    if not len(slots) or not nq:
        return labels, scores
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    compact = rows.compact
    scaled, offset, bound = compact.query_terms(q)
    if compact.rotated and nq <= PRUNE_MAX_QUERIES and len(slots) >= PRUNE_MIN_ROWS:
        cq, cs, ck = _pruned_candidates(compact, q, scaled, offset, bound, slots, k, n_slots)
    else:
        cq, cs, ck = _candidates(compact, scaled, offset, bound, slots, k, chunk_rows, n_slots)
    q64 = q.astype(np.float64)
    exact = np.full(len(cs), np.nan, dtype=np.float64)
    # 2. the k best by approximate key per query, rescored; tau their k-th exact key
    first = _ranks(cq, ck) < k
    _rescore(rows, metric, q64, cq, cs, first, exact)
    tau = np.full(nq, -np.inf)
    np.maximum.at(tau, cq[first], exact[first])
    tau[np.bincount(cq[first], minlength=nq) < k] = np.inf  # fewer than k: keep them all
    # 3. every other row that could still reach tau
    keep = ck.astype(np.float64) <= tau[cq] + bound[cq].astype(np.float64)
    _rescore(rows, metric, q64, cq, cs, keep & ~first, exact)
    keep |= first
    cq, cs, exact = cq[keep], cs[keep], exact[keep]
    order = np.lexsort((cs, exact, cq))
    cq, cs, exact = cq[order], cs[order], exact[order]
    rank = _group_rank(cq)
    top = rank < k
    cq, cs, exact, rank = cq[top], cs[top], exact[top], rank[top]
    labels[cq, rank] = cs
    if metric == "euclidean":
        scores[cq, rank] = np.sqrt(np.maximum(exact, 0.0))
    else:
        scores[cq, rank] = -exact
    return labels, scores


def _candidates(
    compact: CompactVectors,
    scaled: Floats,
    offset: npt.NDArray[np.float64],
    bound: Floats,
    slots: Labels,
    k: int,
    chunk_rows: int,
    n_slots: int | None,
) -> tuple[npt.NDArray[np.int64], Labels, Floats]:
    """Step 1: (query, slot, approximate key) of every row within 2B of its query's k-th
    best approximate key."""
    nq = len(scaled)
    dense = n_slots is not None and 2 * len(slots) >= n_slots
    rows_per_block = max(1, min(chunk_rows, KEY_CELLS // nq))
    member: npt.NDArray[np.bool_] | None = None
    if dense:
        assert n_slots is not None
        member = np.zeros(n_slots, dtype=np.bool_)
        member[slots] = True
        total = n_slots
    else:
        total = len(slots)
    kth = np.full(nq, np.inf, dtype=np.float32)
    window = 2 * bound
    got_q: list[npt.NDArray[np.int64]] = []
    got_s: list[Labels] = []
    got_k: list[Floats] = []
    for start in range(0, total, rows_per_block):
        stop = min(total, start + rows_per_block)
        keys = np.empty((nq, stop - start), dtype=np.float32)
        span: slice | Labels = slice(start, stop) if dense else slots[start:stop]
        compact.keys(scaled, offset, span, keys)
        inside = None
        if member is not None:
            inside = member[start:stop]
            keys[:, ~inside] = np.inf
        if stop - start >= k:
            part = np.partition(keys, k - 1, axis=1)[:, k - 1]
            np.minimum(kth, part, out=kth)
        sel = keys <= (kth + window)[:, None]
        if inside is not None:
            sel &= inside[None, :]
        qi, col = np.nonzero(sel)
        got_q.append(qi.astype(np.int64))
        got_s.append(col.astype(np.int64) + start if dense else np.asarray(span)[col])
        got_k.append(keys[qi, col])
    cq, cs, ck = np.concatenate(got_q), np.concatenate(got_s), np.concatenate(got_k)
    final = ck <= (kth + window)[cq]
    return cq[final], cs[final], ck[final]


def _pruned_candidates(
    compact: CompactVectors,
    q: Floats,
    scaled: Floats,
    offset: npt.NDArray[np.float64],
    bound: Floats,
    slots: Labels,
    k: int,
    n_slots: int | None,
) -> tuple[npt.NDArray[np.int64], Labels, Floats]:
    """Step 1 by steps a-c of the module docstring, one query at a time: the same
    (query, slot, approximate key) as `_candidates`, reading the tails of fewer rows."""
    head = compact.head_terms(q)
    dense = n_slots is not None and 2 * len(slots) >= n_slots
    span: slice | Labels = slice(0, n_slots) if dense else slots
    total = n_slots if dense and n_slots is not None else len(slots)
    outside: npt.NDArray[np.bool_] | None = None
    if dense:
        outside = np.ones(total, dtype=np.bool_)
        outside[slots] = False
    tails = compact.tail_norms(span).astype(np.float64)
    got_q: list[npt.NDArray[np.int64]] = []
    got_s: list[Labels] = []
    got_k: list[Floats] = []
    hk = np.empty((1, total), dtype=np.float32)
    for i in range(len(q)):
        compact.head_keys(head.query(i), span, hk)
        lb = hk[0].astype(np.float64) - head.tail_weight[i] * tails - head.bound[i]
        if outside is not None:
            lb[outside] = np.inf
        if len(slots) > k:
            c = min(len(slots), max(4 * k, 64))
            best = np.argpartition(lb, c - 1)[:c]
            fk = _whole_keys(compact, scaled, offset, i, best if dense else slots[best])
            upper = float(np.partition(fk, k - 1)[k - 1]) + float(bound[i])
            left = np.flatnonzero(lb <= upper)
        else:
            left = np.flatnonzero(np.isfinite(lb))
        cs = left if dense else slots[left]
        ck = _whole_keys(compact, scaled, offset, i, cs)
        kth = np.partition(ck, k - 1)[k - 1] if len(ck) >= k else np.float32(np.inf)
        keep = ck <= kth + 2 * bound[i]
        got_q.append(np.full(int(keep.sum()), i, dtype=np.int64))
        got_s.append(cs[keep].astype(np.int64))
        got_k.append(ck[keep])
    return np.concatenate(got_q), np.concatenate(got_s), np.concatenate(got_k)


def _whole_keys(
    compact: CompactVectors,
    scaled: Floats,
    offset: npt.NDArray[np.float64],
    i: int,
    slots: Labels,
) -> Floats:
    """Query `i`'s approximate keys against `slots`, read whole."""
    out = np.empty((1, len(slots)), dtype=np.float32)
    compact.keys(scaled[i : i + 1], offset[i : i + 1], slots, out)
    keys: Floats = out[0]
    return keys


def _group_rank(sorted_q: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Each entry's position within its run of equal (sorted) query indices."""
    n = len(sorted_q)
    if not n:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_q[1:] != sorted_q[:-1]])
    lengths = np.diff(np.r_[starts, n])
    return np.arange(n, dtype=np.int64) - np.repeat(starts, lengths)


def _ranks(cq: npt.NDArray[np.int64], ck: Floats) -> npt.NDArray[np.int64]:
    """Each candidate's rank by approximate key among its query's candidates."""
    order = np.lexsort((ck, cq))
    out = np.empty(len(cq), dtype=np.int64)
    out[order] = _group_rank(cq[order])
    return out


def _rescore(
    rows: RowData,
    metric: str,
    q64: npt.NDArray[np.float64],
    cq: npt.NDArray[np.int64],
    cs: Labels,
    which: npt.NDArray[np.bool_],
    out: npt.NDArray[np.float64],
) -> None:
    """Exact float64 keys (-score, or squared distance) of the candidates `which` into `out`,
    from the vectors as upserted: cosine normalised in float64, euclidean from differences."""
    idx = np.flatnonzero(which)
    if not len(idx):
        return
    uniq, inv = np.unique(cs[idx], return_inverse=True)
    vecs = rows.exact_vectors(uniq).astype(np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        vecs /= np.where(norms > 0, norms, 1.0)
    for a in range(0, len(idx), RESCORE_ROWS):
        part, v = idx[a : a + RESCORE_ROWS], vecs[inv[a : a + RESCORE_ROWS]]
        qs = q64[cq[part]]
        if metric == "euclidean":
            diff = v - qs
            out[part] = np.einsum("ij,ij->i", diff, diff)
        else:
            out[part] = -np.einsum("ij,ij->i", v, qs)


def to_scores(metric: str, dist: Floats) -> Floats:
    """hnswlib distances to user scores: 1 - d for cosine and dot, sqrt(d) for euclidean."""
    if metric == "euclidean":
        return np.sqrt(np.maximum(dist, 0.0)).astype(np.float32)
    return (1.0 - dist).astype(np.float32)
