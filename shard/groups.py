"""The grouped search of one replica: the best `groups` groups by a metadata field, each with
its best `group_size` hits here (shardvec.contract.groups says what a group is).

It searches the rows that have a group (and pass the filters and the bucket mask) for the
best K = groups x group_size hits, and widens K fourfold until, per query, either the first
`groups` distinct groups of the ranked list each hold `group_size` hits in it, or the list
holds every candidate row (fewer than K hits came back). Then the answer is the same as
grouping a full ranking: a group not in the list ranks below every group in it (its best hit
is worse than every hit of the list), and a group's hits in a prefix of the ranking are its
best. Once K reaches half the candidate rows, the round is an exact scan (cheaper than an
HNSW search that deep, and it ends the widening). With exact=True every round is exact and
the widening goes as far as it must, so the answer is brute force's. With HNSW the depth
stops at DEPTH_FACTOR x groups x group_size (at least ef): the answer is the grouping of the
ranking an HNSW search of that breadth gives, the groups right but a group whose other hits
lie deeper than that holding fewer than group_size (as an approximate search misses far
hits); so a group of scattered rows never turns a search into a scan of the shard.

The answer holds, per query, the picked groups' hits and also every hit of the ranking's
first DEPTH_FACTOR x groups x group_size, whatever its group, with a bound: no hit left out
scores better (none when the ranking was whole and all of it is in). The coordinator then
knows each group's hits here above the bound, and asks again only for a group that may hold
better hits below it (coordinator/queries/groups.py).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from shardvec.contract.filters import Cond
from shardvec.contract.groups import GroupResult, ShardGroupSearch, group_value
from shardvec.contract.types import SearchResult
from shardvec.shard.engine_state import EngineState
from shardvec.shard.facets import scalar_mask, slot_keys
from shardvec.shard.payloads import hit_payloads, read_locked
from shardvec.shard.planner import drop_past_threshold
from shardvec.shard.reads import get, mask_of

_EMPTY = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32), np.zeros(0, dtype=object))
WIDEN = 4
_Read = tuple[
    npt.NDArray[np.object_],  # ids
    npt.NDArray[np.float32],  # scores
    npt.NDArray[np.bool_],  # valid
    npt.NDArray[np.object_] | None,  # metadata texts
    npt.NDArray[np.object_] | None,  # documents
    npt.NDArray[np.object_],  # group keys
    bool,  # the field is a column
    npt.NDArray[np.float32],  # bounds
]
DEPTH_FACTOR = 16  # an HNSW grouped search ranks at most this many times groups x group_size


def group_search(eng: EngineState, request: ShardGroupSearch) -> GroupResult:
    """The request's groups and their hits, best first (module docstring)."""
    s, group = request.search, request.group
    settings = eng.settings
    q = np.ascontiguousarray(s.queries, dtype=np.float32)
    nq, width = len(q), group.hits
    slots = eng._slots

    def read(settle: bool) -> _Read:  # under the read lock (shard/payloads.py)
        column = eng._columns.column(group.field)
        names = list(column.codes) if column is not None else []
        n = slots.n_slots
        mask = mask_of(eng, s.where, s.where_document, s.buckets, settle=settle)
        mask &= scalar_mask(column, n)
        if request.values:
            wanted = tuple(group_value(v) for v in request.values)
            mask &= eng._columns.mask(Cond(group.field, "in", wanted), n)
        m = int(mask.sum())
        kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [_EMPTY] * nq
        bounds = np.full(nq, np.nan, dtype=np.float32)
        todo = np.arange(nq)
        base_ef = settings.ef if s.ef is None else s.ef
        cap = m if s.exact else min(m, max(base_ef, DEPTH_FACTOR * width))
        depth = min(width, cap)
        while len(todo) and depth:
            exact = s.exact or 2 * depth >= m
            labels, scores = eng._planner.search(
                eng._index, q[todo], depth, max(base_ef, depth), alive=slots.alive,
                n_live=len(slots), mask=mask, exact=exact,
            )  # fmt: skip
            drop_past_threshold(labels, scores, settings.metric, s.min_score, s.max_distance)
            row_keys = slot_keys(column, labels.ravel(), names).reshape(labels.shape)
            unfinished = []
            for j, qi in enumerate(todo.tolist()):
                picked, complete = _pick(row_keys[j], group.groups, group.group_size)
                listed = int((labels[j] >= 0).sum())  # valid hits come first
                exhausted = depth >= m or listed < depth
                if not (complete or exhausted or depth >= cap):
                    unfinished.append(qi)
                    continue
                prefix = min(listed, DEPTH_FACTOR * width)
                at = sorted(set(range(prefix)) | set(picked))
                kept[qi] = (labels[j, at], scores[j, at], row_keys[j, at])
                if not (exhausted and prefix == listed):
                    bounds[qi] = scores[j, prefix - 1]
            todo = np.asarray(unfinished, dtype=np.int64)
            depth = min(cap, depth * WIDEN)
        wide = max(1, max(len(k[0]) for k in kept))
        out = np.full((nq, wide), -1, dtype=np.int64)
        out_scores = np.full((nq, wide), np.nan, dtype=np.float32)
        keys = np.full((nq, wide), "", dtype=object)
        for qi, (kept_labels, kept_scores, kept_keys) in enumerate(kept):
            c = len(kept_labels)
            out[qi, :c], out_scores[qi, :c], keys[qi, :c] = kept_labels, kept_scores, kept_keys
        valid = out >= 0
        ids = np.full(out.shape, "", dtype=object)
        ids[valid] = slots.slot_to_id[out[valid]]
        texts, docs = hit_payloads(eng, out, s.include_metadata, s.include_documents, settle)
        return ids, out_scores, valid, texts, docs, keys, column is not None, bounds

    ids, out_scores, valid, texts, docs, keys, grouped, bounds = read_locked(eng, read)
    vectors = _vectors(eng, ids) if s.include_vectors else None
    counts = valid.sum(axis=1).astype(np.int32)
    hits = SearchResult(ids, out_scores, counts, texts, vectors, docs)
    return GroupResult(hits, keys, grouped, bounds)


def _pick(
    keys: npt.NDArray[np.object_], groups: int, group_size: int
) -> tuple[list[int], bool]:
    """Positions of the hits kept from one ranked list: the first `groups` groups' first
    `group_size` hits each, in rank order; and whether every kept group is full."""
    held: dict[str, int] = {}
    picked: list[int] = []
    for pos, key in enumerate(keys.tolist()):
        if not key:
            continue
        have = held.get(key)
        if have is None:
            if len(held) == groups:
                continue
            have = 0
        if have < group_size:
            held[key] = have + 1
            picked.append(pos)
    complete = len(held) == groups and all(v == group_size for v in held.values())
    return picked, complete


def _vectors(eng: EngineState, ids: npt.NDArray[np.object_]) -> npt.NDArray[np.float32]:
    """The hits' vectors as upserted, read as Get reads them (zeros for padding)."""
    out = np.zeros((*ids.shape, eng.settings.dim), dtype=np.float32)
    flat = [i for i in ids.ravel().tolist() if i]
    found = {r.id: r.vector for r in get(eng, flat, True, False, False) if r is not None}
    for pos, id_ in enumerate(ids.ravel().tolist()):
        vec = found.get(id_) if id_ else None
        if vec is not None:
            out.reshape(-1, eng.settings.dim)[pos] = vec
    return out
