"""Each slot's compact vector, stored metadata text and document in memory, beside the index.

Exact scoring (exact=True and the small-subset filter plan) reads rows here: the vectors as
int8 codes by slot (shard/compact.py), scanned in blocks, with the few candidates that could
be in the answer rescored from the float32 values as upserted, which `exact_vectors` reads
through the source the engine binds (shard/row_vectors.py: the store by slot, checked against
the codes). hnswlib keeps the one float32 copy in memory. A hit's metadata is the JSON text
the store holds, returned as is (never parsed and re-dumped).

Memory per row: dim bytes of codes (plus 4 for |x|^2 under euclidean, and 4 for the tail's
norm once the codes are rotated: shard/compact.py), a pointer each for the
metadata text and the document, and those texts (docs/design-notes.md has the whole row's
model). The engine guards it with the index lock: written under the write side with the
index, read under the read side. Documents are held here too (the str objects, "" for none):
search hits return them, and where_document tests scan them under the same lock as the slot
table (shard/documents.py), so a document filter sees exactly the rows the index and metadata
columns see.

With `on_disk` (the collection's `payload_on_disk`) no text or document is held: only each
slot's seq, the batch that wrote the version of the row memory holds (8 bytes a row), which
shard/payloads.py compares with the store's row at that slot to read that version's metadata
and document from the store (`texts`, `documents` and the joined documents are then refused).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from shardvec.shard.compact import CompactVectors
from shardvec.shard.index import Floats, Labels

GROWTH_MIN = 1024
Seqs = int | Sequence[int] | npt.NDArray[np.int64]


class RowData:
    """Compact vectors, metadata JSON texts and documents by slot."""

    def __init__(self, dim: int, metric: str, on_disk: bool = False) -> None:
        self.dim = dim
        self.metric = metric
        self.on_disk = on_disk
        self.compact = CompactVectors(dim, metric)
        # on_disk: the seq of each slot's row version in memory (0: none)
        self._seqs: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        # the float32 values of slots as upserted, for rescoring and search hits (bound by
        # the engine: shard/row_vectors.py)
        self._source: Callable[[Labels], Floats] | None = None
        self._texts: npt.NDArray[np.object_] = np.full(0, "", dtype=object)
        self._docs: npt.NDArray[np.object_] = np.full(0, "", dtype=object)
        self._joined: tuple[int, str, npt.NDArray[np.int64]] | None = None  # see joined_documents

    @property
    def capacity(self) -> int:
        return len(self._seqs) if self.on_disk else len(self._texts)

    def bind_source(self, source: Callable[[Labels], Floats]) -> None:
        """Where `exact_vectors` reads the float32 values as upserted."""
        self._source = source

    def exact_vectors(self, slots: Labels) -> Floats:
        """The float32 vectors at live `slots`, as upserted (caller holds the index lock)."""
        if self._source is None:
            raise RuntimeError("no source of exact vectors is bound")
        return self._source(slots)

    def reserve(self, n: int) -> None:
        """Grow geometrically so that slots below `n` exist."""
        cap = self.capacity
        if n <= cap:
            return
        new = max(n, 2 * cap, GROWTH_MIN)
        self.compact.reserve(new)
        if self.on_disk:
            seqs = np.zeros(new, dtype=np.int64)
            seqs[:cap] = self._seqs
            self._seqs = seqs
            return
        texts = np.full(new, "", dtype=object)
        texts[:cap] = self._texts
        docs = np.full(new, "", dtype=object)
        docs[:cap] = self._docs
        self._texts, self._docs = texts, docs

    def set(
        self, slots: Labels, vectors: Floats, texts: Sequence[str | None], seqs: Seqs
    ) -> None:
        """Rows at `slots` now hold `vectors` and metadata `texts` (None or "": no metadata),
        written by batches `seqs` (one a row, or one for all)."""
        if not len(slots):
            return
        self.set_vectors(slots, vectors)
        self.set_texts(slots, texts, seqs)

    def set_vectors(self, slots: Labels, vectors: Floats) -> None:
        """Rows at `slots` now hold `vectors` (their codes)."""
        if len(slots):
            self.reserve(int(slots.max()) + 1)
            self.compact.set(slots, vectors)

    def set_texts(self, slots: Labels, texts: Sequence[str | None], seqs: Seqs) -> None:
        """Rows at `slots` now hold metadata `texts`, written by batches `seqs`."""
        if len(slots):
            self.reserve(int(slots.max()) + 1)
            if self.on_disk:
                self._seqs[slots] = seqs
            else:
                self._texts[slots] = [t or "" for t in texts]

    def set_documents(self, slots: Labels, docs: Sequence[str | None]) -> None:
        """Rows at `slots` now hold documents `docs` (None or "": none); nothing on_disk."""
        if len(slots) and not self.on_disk:
            self.reserve(int(slots.max()) + 1)
            self._docs[slots] = [d or "" for d in docs]
            self._joined = None

    def clear(self, slots: Labels) -> None:
        """Forget the metadata and documents of deleted slots (codes are never read again)."""
        if not len(slots):
            return
        if self.on_disk:
            self._seqs[slots] = 0
            return
        self._texts[slots] = ""
        self._docs[slots] = ""
        self._joined = None

    def seqs(self, slots: Labels) -> npt.NDArray[np.int64]:
        """on_disk: the seq of each slot's row version in memory (0: none)."""
        return self._seqs[slots]

    def _in_memory(self) -> None:
        if self.on_disk:
            raise RuntimeError("payloads are on disk: read them through shard/payloads.py")

    def documents(self, labels: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
        """Documents at `labels` (any shape; "" where the label is -1 or the row has none)."""
        self._in_memory()
        if not self.capacity:  # never written: every label is -1
            return np.full(labels.shape, "", dtype=object)
        out = self._docs[np.maximum(labels, 0)]
        out[labels < 0] = ""
        return out

    def joined_documents(self, n_slots: int) -> tuple[str, npt.NDArray[np.int64]]:
        """The documents of slots [0, n_slots) joined by NUL into one str, and each slot's start
        offset in it (n_slots + 1 entries): one C-speed str.find pass serves a substring test
        over every row. Built on first use after a change and kept until the next one."""
        self._in_memory()
        got = self._joined
        if got is None or got[0] != n_slots:
            docs = self._docs[:n_slots].tolist()
            lengths = np.fromiter((len(d) + 1 for d in docs), dtype=np.int64, count=n_slots)
            starts = np.zeros(n_slots + 1, dtype=np.int64)
            np.cumsum(lengths, out=starts[1:])
            got = self._joined = (n_slots, "\x00".join(docs) + "\x00", starts)
        return got[1], got[2]

    def document_list(self, n_slots: int) -> list[str]:
        """The documents of slots [0, n_slots) as a list ("" for none), for a scan."""
        self._in_memory()
        docs: list[str] = self._docs[:n_slots].tolist()
        return docs

    def texts(self, labels: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
        """Metadata texts at `labels` (any shape; "" where the label is -1)."""
        self._in_memory()
        if not self.capacity:  # never written: every label is -1
            return np.full(labels.shape, "", dtype=object)
        out = self._texts[np.maximum(labels, 0)]
        out[labels < 0] = ""
        return out

    def nbytes(self, n_slots: int) -> int:
        """Bytes held for the first `n_slots` slots: codes, a pointer each for the metadata
        text and the document, and the texts' characters (not their str headers); on_disk,
        codes and a seq each."""
        if self.on_disk:
            return self.compact.nbytes(n_slots) + n_slots * 8
        texts = sum(len(t) for t in self._texts[:n_slots].tolist())
        docs = sum(len(d) for d in self._docs[:n_slots].tolist())
        return self.compact.nbytes(n_slots) + n_slots * 16 + texts + docs
