"""Evaluating a where_document filter (substring tests) over a replica's in-memory documents.

The documents sit in RowData by slot, evaluated under the index's read lock with the slot table,
so a test sees the rows the index and metadata columns see. Two ways, by how many slots are
still candidates: few (a metadata filter or an earlier AND child left under 1/8 of the slots):
Python's `in` on each candidate's str; many: `str.find` over all documents joined by NUL (kept
by RowData until the next write), jumping to the next row after each hit, so one C-speed pass
finds the rows holding the substring (a needle holding NUL, which could span two rows, takes
the first way). BENCHMARKS.md gives the cost against SQL instr() over the store.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from shardvec.contract.filters import DocAnd, DocCond, DocFilter
from shardvec.shard.rowdata import RowData

Slots = npt.NDArray[np.int64]


SCAN_FRACTION = 8  # candidates above n_slots / 8: one pass over the joined documents


class Documents:
    """The documents of a replica's slots as the tests read them: the RowData and slot count."""

    def __init__(self, rows: RowData, n_slots: int) -> None:
        self.rows = rows
        self.n_slots = n_slots
        self._list: list[str] | None = None

    def list(self) -> list[str]:
        if self._list is None:
            self._list = self.rows.document_list(self.n_slots)
        return self._list

    def holding(self, needle: str) -> npt.NDArray[np.bool_]:
        """A mask over the slots whose document holds `needle` (one pass, joined text)."""
        text, starts = self.rows.joined_documents(self.n_slots)
        out = np.zeros(self.n_slots, dtype=np.bool_)
        find, pos = text.find, 0
        hits: list[int] = []
        while (at := find(needle, pos)) >= 0:
            hits.append(at)
            pos = find("\x00", at) + 1  # on to the next row: one hit per row is enough
        if hits:
            out[np.searchsorted(starts, np.asarray(hits, dtype=np.int64), side="right") - 1] = True
        return out


def document_mask(
    f: DocFilter, docs: Documents, candidates: Slots, n_slots: int
) -> npt.NDArray[np.bool_]:
    """A mask over `n_slots` slots: True where a slot among `candidates` passes `f`."""
    out = np.zeros(n_slots, dtype=np.bool_)
    out[_passing(f, docs, candidates)] = True
    return out


def _passing(f: DocFilter, docs: Documents, cand: Slots) -> Slots:
    """The slots of `cand` (ascending) whose document passes `f`."""
    if not len(cand):
        return cand
    if isinstance(f, DocCond):
        needle = f.text
        if len(cand) * SCAN_FRACTION > docs.n_slots and "\x00" not in needle:
            hit = docs.holding(needle)[cand]
        else:
            lst = docs.list()
            hit = np.fromiter(
                (needle in lst[s] for s in cand.tolist()), dtype=np.bool_, count=len(cand)
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
