"""Search by id ("more like these"): the stored vectors of the ids asked for serve as the
queries, one query per id, and those ids are left out of every result.

The vectors are read with a Get (an id the collection does not hold is NOT_FOUND naming it),
then searched like any query batch with k + len(ids) hits per query, filters and thresholds
applying as usual; each row then drops the asked ids and keeps its best k. At most len(ids)
of a row's hits can be asked ids, so the k kept are the k best of the rest: exactly what a
search for k among the other rows returns.
"""

from __future__ import annotations

import numpy as np

from shardvec.contract.errors import NotFound
from shardvec.contract.types import Hits
from shardvec.coordinator.queries.reads import CollectionReads


async def vectors_of_ids(col: CollectionReads, ids: list[str], deadline: float) -> np.ndarray:
    """The stored vectors of `ids`, in order; NotFound names the first id not stored."""
    found, _, vectors = await col.get(ids, False, True, deadline)
    if len(found) != len(ids):
        have = set(found)
        i = next(j for j, rid in enumerate(ids) if rid not in have)
        raise NotFound(
            f"query_ids[{i}]: id {ids[i]!r} is not in collection {col.spec.name!r}"
        )
    return vectors


def exclude_ids(hits: Hits, ids: set[str], k: int) -> Hits:
    """Each row's hits without `ids`, its best `k` left-aligned (padding: "" / NaN / "" / 0)."""
    nq = hits.ids.shape[0]
    out_ids = np.full((nq, k), "", dtype=object)
    out_scores = np.full((nq, k), np.nan, dtype=np.float32)
    out_meta = None if hits.metadata is None else np.full((nq, k), "", dtype=object)
    out_vecs = None
    if hits.vectors is not None:
        out_vecs = np.zeros((nq, k, hits.vectors.shape[2]), dtype=np.float32)
    counts = np.zeros(nq, dtype=np.int32)
    for row in range(nq):
        n = int(hits.counts[row])
        keep = [j for j, rid in enumerate(hits.ids[row, :n].tolist()) if rid not in ids][:k]
        c = len(keep)
        counts[row] = c
        if not c:
            continue
        out_ids[row, :c] = hits.ids[row, keep]
        out_scores[row, :c] = hits.scores[row, keep]
        if out_meta is not None and hits.metadata is not None:
            out_meta[row, :c] = hits.metadata[row, keep]
        if out_vecs is not None and hits.vectors is not None:
            out_vecs[row, :c] = hits.vectors[row, keep]
    return Hits(out_ids, out_scores, counts, out_meta, out_vecs)
