"""Evaluating a where_document filter (substring tests) over a replica's in-memory documents.

The documents sit in RowData by slot; a test is Python's `in` over the str objects of the
candidate slots (CPython's fast substring search, no copy, no SQL round trip), evaluated under
the index's read lock with the slot table, so it sees the rows the index and metadata columns
see. An AND narrows its candidates child by child and a document test runs only on the slots
a metadata filter already passed, so `where` + `where_document` costs the substring scan of
the rows the metadata left. BENCHMARKS.md gives the cost against SQL instr() over the store.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from shardvec.contract.filters import DocAnd, DocCond, DocFilter

Slots = npt.NDArray[np.int64]


def document_mask(
    f: DocFilter, docs: list[str], candidates: Slots, n_slots: int
) -> npt.NDArray[np.bool_]:
    """A mask over `n_slots` slots: True where a slot among `candidates` passes `f`."""
    out = np.zeros(n_slots, dtype=np.bool_)
    out[_passing(f, docs, candidates)] = True
    return out


def _passing(f: DocFilter, docs: list[str], cand: Slots) -> Slots:
    """The slots of `cand` (ascending) whose document passes `f`."""
    if not len(cand):
        return cand
    if isinstance(f, DocCond):
        needle = f.text
        hit = np.fromiter(
            (needle in docs[s] for s in cand.tolist()), dtype=np.bool_, count=len(cand)
        )
        return cand[hit] if f.op == "contains" else cand[~hit]
    if isinstance(f, DocAnd):
        for child in f.children:
            cand = _passing(child, docs, cand)
            if not len(cand):
                break
        return cand
    left = cand
    found: list[Slots] = []
    for child in f.children:  # OR: each child tests only the slots no earlier child passed
        got = _passing(child, docs, left)
        if len(got):
            found.append(got)
            left = np.setdiff1d(left, got, assume_unique=True)
        if not len(left):
            break
    return np.sort(np.concatenate(found)) if found else cand[:0]
