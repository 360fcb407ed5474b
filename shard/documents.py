"""Evaluating a where_document filter (substring tests) over a replica's in-memory documents.

The documents sit in RowData by slot, evaluated under the index's read lock with the slot table,
so a test sees the rows the index and metadata columns see. Two ways, by how many slots are
still candidates: few (a metadata filter or an earlier AND child left under 1/8 of the slots):
Python's `in` on each candidate's str; many: `str.find` over all documents joined by NUL (kept
by RowData until the next write), jumping to the next row after each hit, so one C-speed pass
finds the rows holding the substring (a needle holding NUL, which could span two rows, takes
the first way). BENCHMARKS.md gives the cost against SQL instr() over the store.

A collection with `payload_on_disk` holds no documents in memory: its tests run over the
store instead (shard/payloads.py `StoredDocuments`, the same `contains`), with the same answers.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from shardvec.contract.filters import DocAnd, DocCond, DocFilter
from shardvec.shard.rowdata import RowData

Slots = npt.NDArray[np.int64]


SCAN_FRACTION = 8  # candidates above n_slots / 8: one pass over the joined documents


class DocumentTests(Protocol):
    """Where a where_document filter reads the documents of slots [0, n_slots)."""

    n_slots: int

    def contains(self, needle: str, cand: Slots) -> npt.NDArray[np.bool_]:
        """Per slot of `cand` (ascending): whether its document contains `needle`."""
        ...


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

    def contains(self, needle: str, cand: Slots) -> npt.NDArray[np.bool_]:
        """Per slot of `cand`: one pass over the joined documents when many are candidates,
        else `in` on each candidate's str."""
        if len(cand) * SCAN_FRACTION > self.n_slots and "\x00" not in needle:
            return self.holding(needle)[cand]
        lst = self.list()
        return np.fromiter(
            (needle in lst[s] for s in cand.tolist()), dtype=np.bool_, count=len(cand)
        )


def document_mask(
    f: DocFilter, docs: DocumentTests, candidates: Slots, n_slots: int
) -> npt.NDArray[np.bool_]:
    """A mask over `n_slots` slots: True where a slot among `candidates` passes `f`."""
    out = np.zeros(n_slots, dtype=np.bool_)
    out[_passing(f, docs, candidates)] = True
    return out


def _passing(f: DocFilter, docs: DocumentTests, cand: Slots) -> Slots:
    """The slots of `cand` (ascending) whose document passes `f`."""
    if not len(cand):
        return cand
    if isinstance(f, DocCond):
        hit = docs.contains(f.text, cand)
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
