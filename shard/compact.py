"""The compact copy of each slot's vector that exact scoring scans: int8 codes on a grid per
dimension, with a proven bound on how far an approximate score can be from the exact one.

Why int8: hnswlib already holds every vector as float32 and exposes no view of it, so a second
float32 copy doubled the vectors' memory (1,536 B a row at 384 dims). int8 codes take 384 B;
float16 would take 768 B and scanned 7x slower (NumPy converts float16 to float32 slowly: 145
against 20 ms over 250k x 384 on the 2-core box), while int8 -> float32 in blocks of a few
hundred rows, each a BLAS product while it sits in cache, scans as fast as the float32 copy
did. The codes only pick candidates: shard/exact.py rescores every row whose approximate
score could reach the k-th best exact score, from the float32 values as upserted
(shard/row_vectors.py), so answers are exact (on the shared set, 13 to 30 rows a query).

The grid: dimension d has a centre mid_d and a step s_d; code c in [-127, 127] stands for
mid_d + s_d * c. `err_d` bounds |x_d - (mid_d + s_d * c_d)| for every row held, so for a query
q, |q . x - q . x^| <= sum_d |q_d| * err_d (`bound`); cosine rows are quantised normalised.
The grid follows the data as it grows: the first rows set each dimension's range, with an
eighth of its width as headroom on each side; a value outside it widens that dimension's range
(by the same headroom) and re-codes the rows already held on that dimension from their codes,
so no exact value is needed (and nothing is read from disk while holding the write lock): the
re-coded rows' error is their old error plus half the new step, which `err_d` records. The
headroom makes widening rare (the range of a dimension's maximum grows slowly with the number
of rows), so the bound stays within a small factor of s_d / 2. A restart codes the rows again
as recovery reads them from the store (shard/recovery.py), the grid growing the same way from
its first chunk. Nothing new is written to disk.

Memory: dim bytes a row, plus 4 for |x|^2 under euclidean (the key is |x|^2 - 2 q . x).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from shardvec.shard.index import Floats, Labels

LEVELS = 127  # codes are -LEVELS..LEVELS
HEADROOM = 0.125  # of a dimension's width, added on each side when its range is set or widened
BLOCK = 512  # rows converted to float32 at a time (fits in L2 with the product)
RECODE_ROWS = 1 << 16
EPS32 = 2.0**-24  # float32 unit roundoff
Codes = npt.NDArray[np.int8]


class CompactVectors:
    """int8 codes of each slot's vector on a per-dimension grid (see the module docstring)."""

    def __init__(self, dim: int, metric: str) -> None:
        self.dim = dim
        self.metric = metric
        self._codes: Codes = np.zeros((0, dim), dtype=np.int8)
        self._sq: Floats = np.zeros(0, dtype=np.float32)  # euclidean: |x|^2 by slot
        self._lo = np.zeros(dim, dtype=np.float64)
        self._hi = np.zeros(dim, dtype=np.float64)
        self._mid = np.zeros(dim, dtype=np.float64)
        self._step = np.zeros(dim, dtype=np.float64)
        self._err = np.zeros(dim, dtype=np.float64)  # |x_d - decoded_d| <= err_d, every row
        self._gridded = False
        self._high = 0  # slots below this may hold codes
        self._max_sq = 0.0  # euclidean: the largest |x|^2 ever set (for the float slack)

    @property
    def capacity(self) -> int:
        return len(self._codes)

    def reserve(self, n: int) -> None:
        """Room for slots below `n` (the caller grows geometrically)."""
        cap = self.capacity
        if n <= cap:
            return
        codes = np.zeros((n, self.dim), dtype=np.int8)
        codes[:cap] = self._codes
        self._codes = codes
        if self.metric == "euclidean":
            sq = np.zeros(n, dtype=np.float32)
            sq[:cap] = self._sq
            self._sq = sq

    def prepared(self, vectors: Floats) -> Floats:
        """What is coded for `vectors`: themselves, normalised under cosine (in float64)."""
        x = np.asarray(vectors, dtype=np.float32)
        if self.metric != "cosine":
            return x
        x64 = x.astype(np.float64)
        norms = np.linalg.norm(x64, axis=1, keepdims=True)
        out: Floats = (x64 / np.where(norms > 0, norms, 1.0)).astype(np.float32)
        return out

    def set(self, slots: Labels, vectors: Floats) -> None:
        """Code `vectors` (as upserted) at `slots`, widening the grid first where needed."""
        if not len(slots):
            return
        self.reserve(int(slots.max()) + 1)
        x = self.prepared(vectors)
        self._cover(x.min(axis=0).astype(np.float64), x.max(axis=0).astype(np.float64))
        self._codes[slots] = self._encode(x)
        if self.metric == "euclidean":
            sq = np.einsum("ij,ij->i", x.astype(np.float64), x.astype(np.float64))
            self._sq[slots] = sq.astype(np.float32)
            self._max_sq = max(self._max_sq, float(sq.max()) * (1 + 4 * EPS32))
        self._high = max(self._high, int(slots.max()) + 1)

    def _encode(self, x: Floats) -> Codes:
        t = (x.astype(np.float64) - self._mid) / np.where(self._step > 0, self._step, 1.0)
        codes: Codes = np.clip(np.rint(t), -LEVELS, LEVELS).astype(np.int8)
        return codes

    def _cover(self, lo: npt.NDArray[np.float64], hi: npt.NDArray[np.float64]) -> None:
        """Widen the grid so [lo, hi] lies in it on every dimension, re-coding held rows."""
        if not self._gridded:
            self._set_grid(np.arange(self.dim), lo, hi)
            self._err = self._step / 2
            self._gridded = True
            return
        out = np.flatnonzero((lo < self._lo) | (hi > self._hi))
        if not len(out):
            return
        old_mid, old_step = self._mid[out].copy(), self._step[out].copy()
        self._set_grid(out, np.minimum(lo[out], self._lo[out]), np.maximum(hi[out], self._hi[out]))
        mid, step = self._mid[out], np.where(self._step[out] > 0, self._step[out], 1.0)
        for start in range(0, self._high, RECODE_ROWS):
            stop = min(self._high, start + RECODE_ROWS)
            decoded = old_mid + old_step * self._codes[start:stop, out].astype(np.float64)
            recoded = np.clip(np.rint((decoded - mid) / step), -LEVELS, LEVELS)
            self._codes[start:stop, out] = recoded.astype(np.int8)
        # a held row was within err of its old code, which is within step/2 of its new one
        self._err[out] = self._err[out] + self._step[out] / 2

    def _set_grid(
        self, dims: npt.NDArray[np.intp], lo: npt.NDArray[np.float64], hi: npt.NDArray[np.float64]
    ) -> None:
        pad = HEADROOM * (hi - lo)
        lo, hi = lo - pad, hi + pad
        self._mid[dims] = (lo + hi) / 2
        self._step[dims] = (hi - lo) / (2 * LEVELS)
        # what the grid covers exactly: values whose code is within -LEVELS..LEVELS
        self._lo[dims] = self._mid[dims] - LEVELS * self._step[dims]
        self._hi[dims] = self._mid[dims] + LEVELS * self._step[dims]

    # ---------------------------------------------------------------------- scoring

    def query_terms(self, q: Floats) -> tuple[Floats, npt.NDArray[np.float64], Floats]:
        """Per query: q scaled by the steps (float32, against the codes), q . mid, and the
        bound on |approximate key - exact key| (`bound`)."""
        q64 = q.astype(np.float64)
        scaled: Floats = (q64 * self._step).astype(np.float32)
        offset = q64 @ self._mid
        return scaled, offset, self.bound(q)

    def bound(self, q: Floats) -> Floats:
        """Per query, a bound on |approximate key - exact key| over every row held.

        The quantisation term is sum_d |q_d| * err_d (cosine adds 2^-24 per dimension for
        normalising in float32); twice that for euclidean, whose key carries -2 q . x. The
        float term covers the float32 products and sums (d + 8 roundings of each term, with
        a factor 8 to spare) and, under euclidean, |x|^2 held in float32.
        """
        aq = np.abs(q.astype(np.float64))
        err = self._err + (EPS32 if self.metric == "cosine" else 0.0)
        quant = aq @ err
        size = aq @ (np.abs(self._mid) + LEVELS * self._step + err)
        factor = 2.0 if self.metric == "euclidean" else 1.0
        slack = 8 * (self.dim + 8) * EPS32 * (factor * size + self._max_sq)
        out: Floats = (factor * quant * (1 + 1e-9) + slack).astype(np.float32)
        return out

    def keys(
        self,
        scaled: Floats,
        offset: npt.NDArray[np.float64],
        span: slice | Labels,
        out: Floats,
    ) -> None:
        """Approximate keys (lower is better: -score, or |x|^2 - 2 q . x under euclidean) of
        the queries against the rows of `span` (a slice of slots, or slots), into `out`
        (nq x rows). The codes are converted to float32 a block at a time."""
        n = out.shape[1]
        buf = np.empty((min(BLOCK, n), self.dim), dtype=np.float32)
        if isinstance(span, slice):
            base = span.start
            for a in range(0, n, BLOCK):
                b = min(n, a + BLOCK)
                np.copyto(buf[: b - a], self._codes[base + a : base + b], casting="unsafe")
                np.matmul(scaled, buf[: b - a].T, out=out[:, a:b])
        else:
            for a in range(0, n, BLOCK):
                b = min(n, a + BLOCK)
                np.copyto(buf[: b - a], self._codes[span[a:b]], casting="unsafe")
                np.matmul(scaled, buf[: b - a].T, out=out[:, a:b])
        out += offset.astype(np.float32)[:, None]
        if self.metric == "euclidean":
            sq = self._sq[span]
            out *= -2.0
            out += sq[None, :]
        else:
            np.negative(out, out=out)

    def within_cells(self, slots: Labels, exact: Floats) -> npt.NDArray[np.bool_]:
        """Per row: whether `exact` (as upserted) lies within err of the codes at `slots` on
        every dimension (and has the |x|^2 held there, under euclidean): true of the values
        the codes were made from, so a row read back from the store passes unless a batch
        being applied rewrote it (shard/row_vectors.py)."""
        x = self.prepared(exact).astype(np.float64)
        decoded = self._mid + self._step * self._codes[slots].astype(np.float64)
        tol = self._err * (1 + 1e-9) + EPS32 * (np.abs(self._mid) + LEVELS * self._step)
        ok = np.asarray((np.abs(x - decoded) <= tol).all(axis=1), dtype=np.bool_)
        if self.metric == "euclidean":
            sq = np.einsum("ij,ij->i", x, x)
            ok &= np.asarray(np.abs(sq - self._sq[slots]) <= 8 * EPS32 * sq, dtype=np.bool_)
        return ok

    def nbytes(self, n_slots: int) -> int:
        return n_slots * (self.dim + (4 if self.metric == "euclidean" else 0))
