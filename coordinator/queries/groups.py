"""Group-by search: per query the best `groups` groups by a metadata field (a group ranks by
its best hit), each with its best `group_size` hits, over every shard of one read view.

A group's rows live on several shards (rows are routed by id), so no shard alone knows a
group's best hits. Two phases under one view (coordinator/queries/read_view.py):

1. Every shard returns its own best `groups` groups with their best `group_size` hits there
   (shard/groups.py), and the coordinator ranks the groups by the best hit seen.
   **The chosen groups are the right ones**: take a group g of the true top `groups`, and the
   shard s holding g's best hit. Every group ranking above g on s has a hit better than g's
   best, so ranks above g overall; fewer than `groups` do, so g is among s's top `groups`
   and its best hit came back. So every true top group is seen with its true best score, and
   a group ranking below them can only show a best hit no better than its true one.
2. A chosen group may still miss hits on a shard: each shard also returns every hit of the
   first part of its ranking whatever its group, and a bound b_s: no hit it left out scores
   better. So g's hits on s above b_s are all known; where g has fewer than `group_size`
   known hits on s and does not hold `group_size` hits better than b_s already, the
   coordinator asks s again for g alone (the same grouped search restricted to the missing
   groups' values), and takes each group's best `group_size` hits of all it has.

Keyword and hybrid searches are grouped at the coordinator instead (`group_ranked`): their
merged ranking is already the one a single index would give (global BM25 statistics, one
fusion), so grouping a deep enough prefix of it is exact; the depth widens until it is.

Relative to one index: with exact=True every shard's ranking is brute force's, so the result
is exactly brute-force grouping over all rows (ties aside). With HNSW each shard groups the
ranking its own search of the same breadth gives (widened until its groups are full, up to
16 x groups x group_size deep: shard/groups.py), and the merge adds no error of its own: it
returns what grouping the union of those rankings would return.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import numpy as np

from shardvec.contract.codec import loads_json
from shardvec.contract.errors import InvalidArgument
from shardvec.contract.groups import GroupBy, GroupResult, ShardGroupSearch, group_key
from shardvec.contract.shard_api import ShardLike
from shardvec.contract.types import Hits, ShardSearch, pick_columns, pick_plan
from shardvec.coordinator.queries.read_view import ReadView
from shardvec.coordinator.queries.reads import CollectionReads, SearchParams

WIDEN = 4  # a grouped ranking's depth grows fourfold until its groups are full


@dataclass
class GroupedHits:
    """Hits listed group by group ((nq, groups * group_size), best group first) and each hit's
    group key (canonical JSON, shardvec.contract.groups; "" for padding)."""

    hits: Hits
    keys: np.ndarray


@dataclass(frozen=True)
class _Hit:
    score: float
    key: str
    part: GroupResult  # where its payloads are
    row: int
    pos: int


async def group_search(
    col: CollectionReads,
    queries: np.ndarray,
    params: SearchParams,
    group: GroupBy,
    deadline: float,
) -> GroupedHits:
    """The grouped search of the module docstring, under one view."""
    search = ShardSearch(
        queries=queries, k=group.hits, exact=params.exact, ef=params.ef, where=params.where,
        min_score=params.min_score, max_distance=params.max_distance,
        include_metadata=params.include_metadata, include_vectors=params.include_vectors,
        include_documents=params.include_documents, where_document=params.where_document,
    )  # fmt: skip
    async with col.views.read() as view:

        async def call(shard: ShardLike, timeout: float, buckets: np.ndarray | None
                       ) -> GroupResult:  # fmt: skip
            mine = search if buckets is None else dataclasses.replace(search, buckets=buckets)
            return await shard.group_search(ShardGroupSearch(mine, group), timeout)

        parts = await view.fan_out(call, deadline)
        if not any(p.field_known for p in parts):
            raise InvalidArgument(f"group_by: no row of collection {col.spec.name!r} holds "
                                  f"the metadata key {group.field!r}")  # fmt: skip
        better = _better(col.higher_is_better)
        rows = [_first_phase(parts, qi, group, better) for qi in range(len(queries))]
        asks = [(qi, s, keys) for qi, (_, missing) in enumerate(rows)
                for s, keys in missing.items()]  # fmt: skip
        more = await asyncio.gather(*(
            _ask_again(view, search, group, qi, s, keys, deadline) for qi, s, keys in asks
        ))  # fmt: skip
    for (qi, _, _), part in zip(asks, more, strict=True):
        hits = rows[qi][0]
        for pos, id_ in enumerate(part.hits.ids[0].tolist()):
            if id_:
                hits.setdefault(id_, _Hit(float(part.hits.scores[0, pos]),
                                          part.keys[0, pos], part, 0, pos))  # fmt: skip
    return _assemble([r[0] for r in rows], group, col.dim, params, better)


def _better(higher_is_better: bool) -> float:
    """The sign that makes a larger sort key a better score."""
    return 1.0 if higher_is_better else -1.0


def _first_phase(
    parts: list[GroupResult], qi: int, group: GroupBy, better: float
) -> tuple[dict[str, _Hit], dict[int, tuple[str, ...]]]:
    """Query `qi`'s hits from every shard by id, and per shard the chosen groups it must be
    asked for again (phase 2 of the module docstring)."""
    hits: dict[str, _Hit] = {}
    known: list[dict[str, int]] = []  # per shard: hits returned of each group
    bounds: list[float | None] = []  # per shard: b_s, None when it left no hit out
    for part in parts:
        mine: dict[str, int] = {}
        for pos, (id_, key) in enumerate(zip(part.hits.ids[qi].tolist(),
                                             part.keys[qi].tolist(), strict=True)):  # fmt: skip
            if id_:
                hits[id_] = _Hit(float(part.hits.scores[qi, pos]), key, part, qi, pos)
                mine[key] = mine.get(key, 0) + 1
        known.append(mine)
        b_s = float(part.bounds[qi])
        bounds.append(None if np.isnan(b_s) else better * b_s)
    chosen = _ranked_groups(hits.values(), better)[: group.groups]
    missing: dict[int, list[str]] = {}
    for key in chosen:
        best = sorted((better * h.score for h in hits.values() if h.key == key), reverse=True)
        for s, bound in enumerate(bounds):
            if bound is None or known[s].get(key, 0) >= group.group_size:
                continue
            if len(best) >= group.group_size and best[group.group_size - 1] > bound:
                continue
            missing.setdefault(s, []).append(key)
    return hits, {s: tuple(keys) for s, keys in missing.items()}


def _ranked_groups(hits: Iterable[_Hit], better: float) -> list[str]:
    best: dict[str, float] = {}
    for h in hits:
        v = better * h.score
        if h.key not in best or v > best[h.key]:
            best[h.key] = v
    return sorted(best, key=lambda k: (-best[k], k))


async def _ask_again(
    view: ReadView, search: ShardSearch, group: GroupBy, qi: int, shard: int,
    keys: tuple[str, ...], deadline: float,
) -> GroupResult:  # fmt: skip
    """Shard `shard`'s best hits of groups `keys` alone, for query `qi`, under `view`."""
    one = dataclasses.replace(search, queries=search.queries[qi : qi + 1],
                              k=len(keys) * group.group_size, packed=None,
                              buckets=view.buckets(shard))  # fmt: skip
    ask = ShardGroupSearch(one, GroupBy(group.field, len(keys), group.group_size), keys)

    async def call(replica: ShardLike, timeout: float) -> GroupResult:
        return await replica.group_search(ask, timeout)

    return await view.sets[shard].read(call, deadline)


def _assemble(
    rows: list[dict[str, _Hit]], group: GroupBy, dim: int, params: SearchParams, better: float
) -> GroupedHits:
    nq, width = len(rows), group.hits
    ids = np.full((nq, width), "", dtype=object)
    scores = np.full((nq, width), np.nan, dtype=np.float32)
    keys = np.full((nq, width), "", dtype=object)
    counts = np.zeros(nq, dtype=np.int32)
    metadata = np.full((nq, width), "", dtype=object) if params.include_metadata else None
    vectors = np.zeros((nq, width, dim), dtype=np.float32) if params.include_vectors else None
    documents = np.full((nq, width), "", dtype=object) if params.include_documents else None
    for qi, hits in enumerate(rows):
        by_group: dict[str, list[tuple[str, _Hit]]] = {}
        for id_, h in hits.items():
            by_group.setdefault(h.key, []).append((id_, h))
        c = 0
        for key in _ranked_groups(hits.values(), better)[: group.groups]:
            members = sorted(by_group[key], key=lambda ih: (-better * ih[1].score, ih[0]))
            for id_, h in members[: group.group_size]:
                ids[qi, c], scores[qi, c], keys[qi, c] = id_, h.score, key
                p = h.part.hits
                if metadata is not None and p.metadata is not None:
                    metadata[qi, c] = p.metadata[h.row, h.pos]
                if vectors is not None and p.vectors is not None:
                    vectors[qi, c] = p.vectors[h.row, h.pos]
                if documents is not None and p.documents is not None:
                    documents[qi, c] = p.documents[h.row, h.pos]
                c += 1
        counts[qi] = c
    return GroupedHits(Hits(ids, scores, counts, metadata, vectors, documents), keys)


async def group_ranked(
    run: Callable[[int], Awaitable[Hits]], group: GroupBy, max_k: int, keep_metadata: bool
) -> GroupedHits:
    """Grouped keyword or hybrid search: `run(depth)` is the merged ranking's best `depth`
    hits per query with their metadata (keyword_search or hybrid_search,
    coordinator/queries/keyword_search.py). The depth starts at groups x group_size and
    widens fourfold until, per query, the first `groups` groups of the ranking are full or
    the ranking ran out; then the groups are those of grouping the whole ranking (as in
    shard/groups.py). A widening stopped by the k cap `max_k` keeps the groups found in the
    first `max_k` hits. The key is read from each hit's metadata JSON, with the same
    semantics as the filter columns' (shardvec.contract.groups)."""
    depth = group.hits
    while True:
        hits = await run(depth)
        assert hits.metadata is not None, "a grouped ranking needs the hits' metadata"
        keys = np.full(hits.ids.shape, "", dtype=object)
        for qi, row in enumerate(hits.metadata.tolist()):
            for pos, text in enumerate(row[: int(hits.counts[qi])]):
                md = loads_json(text) if text else {}
                key = group_key(md.get(group.field)) if isinstance(md, dict) else None
                keys[qi, pos] = key or ""
        picks = [_pick_ranked(keys[qi], group) for qi in range(len(keys))]
        whole = all(full or int(hits.counts[qi]) < depth
                    for qi, (_, full) in enumerate(picks))  # fmt: skip
        if whole or depth >= max_k:
            break
        depth = min(max_k, depth * WIDEN)
    take, _, real = pick_plan([positions for positions, _ in picks], group.hits)
    out = hits.pick([positions for positions, _ in picks], group.hits)
    chosen = pick_columns(keys, take, real, "")
    assert chosen is not None
    if not keep_metadata:
        out = dataclasses.replace(out, metadata=None)
    return GroupedHits(out, chosen)


def _pick_ranked(keys: np.ndarray, group: GroupBy) -> tuple[list[int], bool]:
    """Positions kept from one ranking, group by group (best group first, each group's hits
    in rank order): the first `groups` groups' first `group_size` hits; and whether every kept
    group is full."""
    held: dict[str, list[int]] = {}
    for pos, key in enumerate(keys.tolist()):
        if not key or (key not in held and len(held) == group.groups):
            continue
        members = held.setdefault(key, [])
        if len(members) < group.group_size:
            members.append(pos)
    full = len(held) == group.groups and all(len(m) == group.group_size for m in held.values())
    return [pos for members in held.values() for pos in members], full
