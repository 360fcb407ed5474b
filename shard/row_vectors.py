"""The float32 values of a replica's live slots as upserted, for rescoring and search hits.

hnswlib holds the one float32 copy in memory, but reads it back at 11 us a row and, under
cosine, holds it normalised; the store's `vector` column holds the values as upserted and
reads them by slot at about 1-2 us a row (checksum included: 0.26 ms for 100 rows against
1.2 ms from hnswlib). So rows are read from the store by slot.

The store runs ahead of memory by at most the one batch being applied (it commits before the
engine takes the index's write lock, and writers are serialised), so a slot read there may hold
another id, or a newer vector of the same id, than the in-memory state the caller is reading
under the read lock. A row is taken from the store only when its id is the slot's id in
memory and its values lie within the compact codes' cells (shard/compact.py `within_cells`),
which the values the codes were made from always do; any other row is read from hnswlib,
which holds the in-memory state itself (normalised under cosine, which changes a cosine score
by at most a float32 rounding, and only for a row a concurrent batch is rewriting). The cells
are checked only when a write of rows has begun since memory caught up with the store
(`store_is_memory`): otherwise every row read is memory's version, and the check, which
rotates each row into the codes' basis, would cost a 500-query batch's 10k rows 75 ms.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from shardvec.contract.errors import DataLoss
from shardvec.shard.engine_state import EngineState, store_is_memory
from shardvec.shard.index import Floats, Labels
from shardvec.shard.store_rows import decode_vector, decode_vector_rows


class RowVectors:
    """Reads the vectors of live slots for one engine; called under the index's read lock."""

    def __init__(self, eng: EngineState) -> None:
        self._eng = eng

    def read(self, slots: Labels) -> tuple[Floats, npt.NDArray[np.bool_]]:
        """The stored vectors at `slots` (zeros where not taken), and which were taken: the
        row at that slot in the store is the one in memory (see the module docstring)."""
        eng = self._eng
        dim = eng.settings.dim
        out = np.zeros((len(slots), dim), dtype=np.float32)
        ok = np.zeros(len(slots), dtype=np.bool_)
        if not len(slots):
            return out, ok
        gen = eng._store.generation
        try:
            stored = eng._store.vectors_at(slots.tolist())
        except DataLoss as exc:
            eng.mark_damaged(exc.message)
            raise
        synced = store_is_memory(eng, gen)  # then every row read is memory's version
        ids = eng._slots.slot_to_id
        blobs: list[bytes] = []
        for j, slot in enumerate(slots.tolist()):
            got = stored.get(slot)
            if got is not None and got[0] == ids[slot] and len(got[1]) == 4 * dim:
                blobs.append(got[1])
                ok[j] = True
        if blobs:
            out[ok] = decode_vector_rows(blobs, dim)
            if not synced:
                ok[ok] = eng._rows.compact.within_cells(slots[ok], out[ok])
        return out, ok

    def __call__(self, slots: Labels) -> Floats:
        """The vectors at `slots` for rescoring: from the store, else from hnswlib."""
        out, ok = self.read(slots)
        if not ok.all():
            out[~ok] = self._eng._index.vectors(slots[~ok])
        return out

    def hits(self, labels: Labels, settle: bool) -> Floats | None:
        """The vectors as upserted of search hits `labels` (any shape; zeros where -1). A row
        the store holds newer than memory comes from hnswlib under dot and euclidean (it holds
        them as upserted); under cosine (hnswlib holds them normalised) the answer is None,
        so the caller reads again after that batch is applied, unless `settle` (the last
        try, which a steady stream of batches rewriting hits can reach): then the row's newest
        committed values are read by its id, and only a row that batch deleted is given
        normalised."""
        flat = labels.ravel()
        live = flat >= 0
        out = np.zeros((len(flat), self._eng.settings.dim), dtype=np.float32)
        got, ok = self.read(flat[live])
        if not ok.all() and self._eng.settings.metric == "cosine":
            if not settle:
                return None
            ok |= self._by_id(flat[live], got, ok)
        if not ok.all():
            got[~ok] = self._eng._index.vectors(flat[live][~ok])
        out[live] = got
        return out.reshape(*labels.shape, -1)

    def _by_id(
        self, slots: Labels, got: Floats, ok: npt.NDArray[np.bool_]
    ) -> npt.NDArray[np.bool_]:
        """The rows at `slots` not taken (`~ok`) read by their in-memory id from the store
        into `got`: the row's newest committed values (the batch being applied rewrote or
        moved it), as upserted; which were found. A row that batch deleted stays not found."""
        found = np.zeros(len(slots), dtype=np.bool_)
        want = np.flatnonzero(~ok)
        ids = self._eng._slots.slot_to_id[slots[want]]
        try:
            rows = self._eng._store.get_rows(ids.tolist(), metadata=False)
        except DataLoss as exc:
            self._eng.mark_damaged(exc.message)
            raise
        dim = self._eng.settings.dim
        for j, rid in zip(want.tolist(), ids.tolist(), strict=True):
            row = rows.get(rid)
            if row is not None and row.vector is not None and len(row.vector) == 4 * dim:
                got[j] = decode_vector(row.vector)
                found[j] = True
        return found
