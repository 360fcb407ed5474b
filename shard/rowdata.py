"""Each slot's vector, stored metadata text and document in memory, beside the index.

Exact scoring (exact=True and the small-subset filter plan) and search responses read rows
here: the vectors sit in one contiguous float32 array by slot, so an exact pass over every
row is a matrix product over views, with no copy out of hnswlib (13 us a row) or SQLite, and a
hit's metadata is the JSON text the store holds, returned as is (never parsed and re-dumped).

Memory: 4 * dim bytes a row for the vectors plus 4 for a norm term, plus the metadata texts
(BENCHMARKS.md gives the figure against the raw index). The engine guards it with the index
lock: written under the write side with the index, read under the read side. Documents are
held here too (the str objects, "" for none): search hits return them, and where_document
tests scan them under the same lock as the slot table (shard/documents.py), so a document
filter sees exactly the rows the index and metadata columns see.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from shardvec.shard.index import Floats, Labels

GROWTH_MIN = 1024


class RowData:
    """Vectors (as upserted), norm terms and metadata JSON texts by slot."""

    def __init__(self, dim: int, metric: str) -> None:
        self.dim = dim
        self.metric = metric
        self._vectors: Floats = np.zeros((0, dim), dtype=np.float32)
        # cosine: 1 / |v| (scores are q_n . v / |v|); euclidean: |v|^2; dot: unused
        self._norm: Floats = np.zeros(0, dtype=np.float32)
        self._texts: npt.NDArray[np.object_] = np.full(0, "", dtype=object)
        self._docs: npt.NDArray[np.object_] = np.full(0, "", dtype=object)
        self._joined: tuple[int, str, npt.NDArray[np.int64]] | None = None  # see joined_documents

    @property
    def capacity(self) -> int:
        return len(self._norm)

    def reserve(self, n: int) -> None:
        """Grow geometrically so that slots below `n` exist."""
        cap = self.capacity
        if n <= cap:
            return
        new = max(n, 2 * cap, GROWTH_MIN)
        vectors = np.zeros((new, self.dim), dtype=np.float32)
        vectors[:cap] = self._vectors
        norm = np.zeros(new, dtype=np.float32)
        norm[:cap] = self._norm
        texts = np.full(new, "", dtype=object)
        texts[:cap] = self._texts
        docs = np.full(new, "", dtype=object)
        docs[:cap] = self._docs
        self._vectors, self._norm, self._texts, self._docs = vectors, norm, texts, docs

    def set(self, slots: Labels, vectors: Floats, texts: Sequence[str | None]) -> None:
        """Rows at `slots` now hold `vectors` and metadata `texts` (None or "": no metadata)."""
        if not len(slots):
            return
        self.reserve(int(slots.max()) + 1)
        self._vectors[slots] = vectors
        self._norm[slots] = self._norm_terms(self._vectors[slots])
        self._texts[slots] = [t or "" for t in texts]

    def set_texts(self, slots: Labels, texts: Sequence[str | None]) -> None:
        if len(slots):
            self.reserve(int(slots.max()) + 1)
            self._texts[slots] = [t or "" for t in texts]

    def set_documents(self, slots: Labels, docs: Sequence[str | None]) -> None:
        """Rows at `slots` now hold documents `docs` (None or "": none)."""
        if len(slots):
            self.reserve(int(slots.max()) + 1)
            self._docs[slots] = [d or "" for d in docs]
            self._joined = None

    def clear(self, slots: Labels) -> None:
        """Forget the metadata and documents of deleted slots (vectors are never read again)."""
        self._texts[slots] = ""
        if len(slots):
            self._docs[slots] = ""
            self._joined = None

    def documents(self, labels: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
        """Documents at `labels` (any shape; "" where the label is -1 or the row has none)."""
        if not self.capacity:  # never written: every label is -1
            return np.full(labels.shape, "", dtype=object)
        out = self._docs[np.maximum(labels, 0)]
        out[labels < 0] = ""
        return out

    def joined_documents(self, n_slots: int) -> tuple[str, npt.NDArray[np.int64]]:
        """The documents of slots [0, n_slots) joined by NUL into one str, and each slot's start
        offset in it (n_slots + 1 entries): one C-speed str.find pass serves a substring test
        over every row. Built on first use after a change and kept until the next one."""
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
        docs: list[str] = self._docs[:n_slots].tolist()
        return docs

    def _norm_terms(self, vecs: Floats) -> Floats:
        with np.errstate(over="ignore", divide="ignore"):
            sq: Floats = np.einsum("ij,ij->i", vecs, vecs).astype(np.float32)
            if self.metric == "cosine":
                inv: Floats = (1.0 / np.sqrt(sq)).astype(np.float32)
                return inv
        return sq

    def vectors(self, slots: Labels) -> Floats:
        """A copy of the vectors at `slots` (rows of -1 come back as zeros)."""
        if not self.capacity:  # never written: every slot is -1
            return np.zeros((*slots.shape, self.dim), dtype=np.float32)
        out = self._vectors[np.maximum(slots, 0)]
        out[slots < 0] = 0.0
        return out

    def texts(self, labels: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
        """Metadata texts at `labels` (any shape; "" where the label is -1)."""
        if not self.capacity:  # never written: every label is -1
            return np.full(labels.shape, "", dtype=object)
        out = self._texts[np.maximum(labels, 0)]
        out[labels < 0] = ""
        return out

    def scoring_view(self, start: int, stop: int) -> tuple[Floats, Floats]:
        """Vectors and norm terms of slots [start, stop): views, no copy."""
        return self._vectors[start:stop], self._norm[start:stop]

    def scoring_rows(self, slots: Labels) -> tuple[Floats, Floats]:
        """Vectors and norm terms of `slots`, gathered (one contiguous copy)."""
        return self._vectors[slots], self._norm[slots]

    def nbytes(self, n_slots: int) -> int:
        """Bytes held for the first `n_slots` slots (vectors, norms, metadata texts)."""
        texts = sum(len(t) for t in self._texts[:n_slots].tolist())
        docs = sum(len(d) for d in self._docs[:n_slots].tolist())
        return n_slots * (self.dim * 4 + 4 + 16) + texts + docs
