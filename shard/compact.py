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

The basis: the codes are of each vector in a rotated basis, the principal axes of the first
batch the replica codes (PCA of its rows, when it holds at least ROTATE_MIN_ROWS of them; a
restart's first chunk of 20,000 rows otherwise), fixed for the replica's life. A rotation keeps
every dot product and distance, so the keys and bounds above hold as they are, on rotated
coordinates. What it buys is order: the first dim / 3 rotated dimensions (the head, held as
their own array) carry most of each vector (70 to 80 % of the energy on the shared set), and
the rest (the tail) is held with its exact norm |x_tail| per row. A single query's exact scan
then reads the head alone first: q . x <= q_head . x_head + |q_tail| |x_tail|, so a row's key
is at least its head key less |q_tail| |x_tail| and the head's bound, and every row whose
lower bound is above a proven upper bound on the k-th best key is skipped without reading its
tail (shard/exact.py). On the shared set about 3 % of the rows are left at the median query
(100k rows, the basis fitted on a first batch of 1,250; a quarter of the dimensions as the
head left 12 %, at a cost per row only a third lower).
A first batch too small for a fit keeps the identity basis and no split until the replica
restarts (every row is then scanned whole, as before). ROTATE_MIN_ROWS is 128 so that the
client's default batch of 1,000 rows fits it over 4 shards (250 rows a shard): a basis
fitted on 128 rows of the shared set still leaves 6 % of 250k rows at the median query (by
the bound with the exact k-th key: 0.5 % on 1,250 rows, 2 % on 256).

Memory: dim bytes a row, plus 4 for |x|^2 under euclidean (the key is |x|^2 - 2 q . x), plus 4
for |x_tail| once rotated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from shardvec.shard.index import Floats, Labels

LEVELS = 127  # codes are -LEVELS..LEVELS
HEADROOM = 0.125  # of a dimension's width, added on each side when its range is set or widened
BLOCK = 512  # rows converted to float32 at a time (fits in L2 with the product)
RECODE_ROWS = 1 << 16
EPS32 = 2.0**-24  # float32 unit roundoff
ROTATE_MIN_ROWS = 128  # a first batch this large fits the rotated basis (see below)
SPLIT_MIN_DIM = 16  # below, no rotation and no head / tail split
HEAD_FRACTION = 3  # the head holds dim // HEAD_FRACTION rotated dimensions
Codes = npt.NDArray[np.int8]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class HeadTerms:
    """Per query, what a head-only scan needs (CompactVectors.head_terms): q's head scaled by
    the steps, q_head . mid_head, the head's bound, and |q_tail| times the key's factor (2
    under euclidean, 1 otherwise), so key >= head key - tail_weight * |x_tail| - head_bound."""

    scaled: Floats
    offset: F64
    bound: F64
    tail_weight: F64

    def query(self, i: int) -> HeadTerms:
        """The terms of query `i` alone."""
        one = slice(i, i + 1)
        return HeadTerms(self.scaled[one], self.offset[one], self.bound[one],
                         self.tail_weight[one])  # fmt: skip


class CompactVectors:
    """int8 codes of each slot's vector on a per-dimension grid (see the module docstring)."""

    def __init__(self, dim: int, metric: str) -> None:
        self.dim = dim
        self.metric = metric
        self.head_dims = dim  # the rotated dimensions in the head; all until a rotation
        self._rot: F64 | None = None  # the basis (columns), once fitted
        self._head: Codes = np.zeros((0, dim), dtype=np.int8)
        self._tail: Codes = np.zeros((0, 0), dtype=np.int8)
        self._tail_norm: Floats = np.zeros(0, dtype=np.float32)  # |x_tail| rounded up
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
        return len(self._head)

    @property
    def rotated(self) -> bool:
        return self._rot is not None

    def reserve(self, n: int) -> None:
        """Room for slots below `n` (the caller grows geometrically)."""
        cap = self.capacity
        if n <= cap:
            return
        self._head = _grown(self._head, n)
        self._tail = _grown(self._tail, n)
        if self.rotated:
            self._tail_norm = _grown(self._tail_norm, n)
        if self.metric == "euclidean":
            self._sq = _grown(self._sq, n)

    def prepared(self, vectors: Floats) -> Floats:
        """What is coded for `vectors`: themselves, normalised under cosine (in float64)."""
        x = np.asarray(vectors, dtype=np.float32)
        if self.metric != "cosine":
            return x
        x64 = x.astype(np.float64)
        norms = np.linalg.norm(x64, axis=1, keepdims=True)
        out: Floats = (x64 / np.where(norms > 0, norms, 1.0)).astype(np.float32)
        return out

    def rotate(self, x: Floats) -> F64:
        """`x` (float32 rows or queries) in the codes' basis, in float64."""
        x64 = np.asarray(x, dtype=np.float64)
        return x64 @ self._rot if self._rot is not None else x64

    def set(self, slots: Labels, vectors: Floats) -> None:
        """Code `vectors` (as upserted) at `slots`, widening the grid first where needed."""
        if not len(slots):
            return
        x = self.prepared(vectors)
        if not self._gridded:
            self._fit_basis(x)
        self.reserve(int(slots.max()) + 1)
        xr = self.rotate(x)
        self._cover(xr.min(axis=0), xr.max(axis=0))
        codes = self._encode(xr)
        p = self.head_dims
        self._head[slots] = codes[:, :p]
        self._tail[slots] = codes[:, p:]
        if self.rotated:
            tail = np.linalg.norm(xr[:, p:], axis=1).astype(np.float32)
            self._tail_norm[slots] = np.nextafter(tail, np.float32(np.inf))  # never below
        if self.metric == "euclidean":
            sq = np.einsum("ij,ij->i", x.astype(np.float64), x.astype(np.float64))
            self._sq[slots] = sq.astype(np.float32)
            self._max_sq = max(self._max_sq, float(sq.max()) * (1 + 4 * EPS32))
        self._high = max(self._high, int(slots.max()) + 1)

    def _fit_basis(self, x: Floats) -> None:
        """Before the first codes: the principal axes of `x` as the basis, and the head /
        tail split, when `x` has rows enough to fit them (module docstring)."""
        if len(x) < ROTATE_MIN_ROWS or self.dim < SPLIT_MIN_DIM:
            return
        x64 = x.astype(np.float64)
        _, axes = np.linalg.eigh(np.cov(x64, rowvar=False))
        self._rot = np.ascontiguousarray(axes[:, ::-1])  # largest variance first
        self.head_dims = self.dim // HEAD_FRACTION
        cap, p = self.capacity, self.head_dims
        self._head = np.zeros((cap, p), dtype=np.int8)
        self._tail = np.zeros((cap, self.dim - p), dtype=np.int8)
        self._tail_norm = np.zeros(cap, dtype=np.float32)

    def _encode(self, x: F64) -> Codes:
        t = (x - self._mid) / np.where(self._step > 0, self._step, 1.0)
        codes: Codes = np.clip(np.rint(t), -LEVELS, LEVELS).astype(np.int8)
        return codes

    def _parts(self) -> tuple[tuple[Codes, int], tuple[Codes, int]]:
        """The two code arrays with the first rotated dimension each holds."""
        return (self._head, 0), (self._tail, self.head_dims)

    def codes(self, slots: Labels) -> Codes:
        """The whole codes (head and tail) of `slots`."""
        return np.hstack([self._head[slots], self._tail[slots]])

    def _cover(self, lo: F64, hi: F64) -> None:
        """Widen the grid so [lo, hi] lies in it on every dimension, re-coding held rows."""
        if not self._gridded:
            self._set_grid(np.arange(self.dim), lo, hi)
            self._err = self._step / 2
            self._gridded = True
            return
        out = np.flatnonzero((lo < self._lo) | (hi > self._hi))
        if not len(out):
            return
        old_mid, old_step = self._mid.copy(), self._step.copy()
        self._set_grid(out, np.minimum(lo[out], self._lo[out]), np.maximum(hi[out], self._hi[out]))
        for arr, first in self._parts():
            dims = out[(out >= first) & (out < first + arr.shape[1])]
            if not len(dims):
                continue
            cols = dims - first
            mid, step = self._mid[dims], np.where(self._step[dims] > 0, self._step[dims], 1.0)
            for start in range(0, self._high, RECODE_ROWS):
                stop = min(self._high, start + RECODE_ROWS)
                decoded = old_mid[dims] + old_step[dims] * arr[start:stop, cols].astype(np.float64)
                recoded = np.clip(np.rint((decoded - mid) / step), -LEVELS, LEVELS)
                arr[start:stop, cols] = recoded.astype(np.int8)
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

    def query_terms(self, q: Floats) -> tuple[Floats, F64, Floats]:
        """Per query: q (in the codes' basis) scaled by the steps (float32, against the
        codes), q . mid, and the bound on |approximate key - exact key| (`bound`)."""
        qr = self.rotate(q)
        scaled: Floats = (qr * self._step).astype(np.float32)
        offset = qr @ self._mid
        return scaled, offset, self._bound(qr, slice(None)).astype(np.float32)

    def head_terms(self, q: Floats) -> HeadTerms:
        """Per query, the terms of a head-only scan (HeadTerms; rotated codes only)."""
        qr, p = self.rotate(q), self.head_dims
        factor = 2.0 if self.metric == "euclidean" else 1.0
        return HeadTerms(
            scaled=(qr[:, :p] * self._step[:p]).astype(np.float32),
            offset=qr[:, :p] @ self._mid[:p],
            bound=self._bound(qr, slice(0, p)),
            tail_weight=factor * np.linalg.norm(qr[:, p:], axis=1) * (1 + 1e-9),
        )

    def _bound(self, qr: F64, dims: slice) -> F64:
        """The bound for rotated queries `qr` over the dimensions `dims`.

        The quantisation term is sum_d |q_d| * err_d (cosine adds 2^-24 per dimension for
        normalising in float32); twice that for euclidean, whose key carries -2 q . x. The
        float term covers the float32 products and sums (d + 8 roundings of each term, with
        a factor 8 to spare; the rotation's float64 roundings are far below it) and, under
        euclidean, |x|^2 held in float32. It is taken over every dimension also for a part.
        """
        aq = np.abs(qr)
        err = self._err + (EPS32 if self.metric == "cosine" else 0.0)
        quant = aq[:, dims] @ err[dims]
        size = aq @ (np.abs(self._mid) + LEVELS * self._step + err)
        factor = 2.0 if self.metric == "euclidean" else 1.0
        slack = 8 * (self.dim + 8) * EPS32 * (factor * size + self._max_sq)
        out: F64 = factor * quant * (1 + 1e-9) + slack
        return out

    def keys(
        self,
        scaled: Floats,
        offset: F64,
        span: slice | Labels,
        out: Floats,
    ) -> None:
        """Approximate keys (lower is better: -score, or |x|^2 - 2 q . x under euclidean) of
        the queries against the rows of `span` (a slice of slots, or slots), into `out`
        (nq x rows). The codes are converted to float32 a block at a time."""
        self._scan(scaled, offset, span, out, whole=True)

    def head_keys(self, terms: HeadTerms, span: slice | Labels, out: Floats) -> None:
        """The keys of the head alone (its dimensions' share of q . x, |x|^2 whole under
        euclidean) for the queries of `terms` against the rows of `span`, into `out`."""
        self._scan(terms.scaled, terms.offset, span, out, whole=False)

    def tail_norms(self, span: slice | Labels) -> Floats:
        """|x_tail| (rounded up) of the rows of `span`; rotated codes only."""
        return self._tail_norm[span]

    def _scan(
        self, scaled: Floats, offset: F64, span: slice | Labels, out: Floats, *, whole: bool
    ) -> None:
        """Keys of the head (`whole` False) or of whole rows: each block of codes (the head's
        and the tail's side by side) converted to float32 and multiplied while in cache."""
        n, p = out.shape[1], self.head_dims
        width = self.dim if whole else p
        q = scaled[:, :width]
        single = len(scaled) == 1
        buf = np.empty((min(BLOCK, n), width), dtype=np.float32)
        for a in range(0, n, BLOCK):
            b = min(n, a + BLOCK)
            rows = slice(span.start + a, span.start + b) if isinstance(span, slice) else span[a:b]
            np.copyto(buf[: b - a, :p], self._head[rows], casting="unsafe")
            if width > p:
                np.copyto(buf[: b - a, p:], self._tail[rows], casting="unsafe")
            if single:  # a matrix-vector product: faster than 1 x n
                np.matmul(buf[: b - a], q[0], out=out[0, a:b])
            else:
                np.matmul(q, buf[: b - a].T, out=out[:, a:b])
        out += offset.astype(np.float32)[:, None]
        if self.metric == "euclidean":
            sqn = self._sq[span]
            out *= -2.0
            out += sqn[None, :]
        else:
            np.negative(out, out=out)

    def within_cells(self, slots: Labels, exact: Floats) -> npt.NDArray[np.bool_]:
        """Per row: whether `exact` (as upserted) lies within err of the codes at `slots` on
        every dimension (and has the |x|^2 held there, under euclidean): true of the values
        the codes were made from, so a row read back from the store passes unless a batch
        being applied rewrote it (shard/row_vectors.py)."""
        x = self.rotate(self.prepared(exact))
        decoded = self._mid + self._step * self.codes(slots).astype(np.float64)
        tol = self._err * (1 + 1e-9) + EPS32 * (np.abs(self._mid) + LEVELS * self._step)
        ok = np.asarray((np.abs(x - decoded) <= tol).all(axis=1), dtype=np.bool_)
        if self.metric == "euclidean":
            sq = np.einsum("ij,ij->i", x, x)
            ok &= np.asarray(np.abs(sq - self._sq[slots]) <= 8 * EPS32 * sq, dtype=np.bool_)
        return ok

    # ---------------------------------------------------------------------- checkpoint

    def state(self) -> dict[str, npt.NDArray[Any]]:
        """The codes of the slots written so far, the grid and the basis, as arrays for the
        index checkpoint (shard/checkpoint.py): a restart that loads them codes only the rows
        newer than the checkpoint. Views, not copies: the caller holds the index lock."""
        high = self._high
        out: dict[str, npt.NDArray[Any]] = {
            "head": self._head[:high],
            "tail": self._tail[:high],
            "tail_norm": self._tail_norm[:high] if self.rotated else self._tail_norm[:0],
            "sq": self._sq[:high] if self.metric == "euclidean" else self._sq[:0],
            "grid": np.stack([self._lo, self._hi, self._mid, self._step, self._err]),
            "scalars": np.array([self.head_dims, high, int(self._gridded)], dtype=np.int64),
            "max_sq": np.array([self._max_sq], dtype=np.float64),
        }
        if self._rot is not None:
            out["rot"] = self._rot
        return out

    def would_refit(self, state: Mapping[str, npt.NDArray[Any]]) -> bool:
        """Whether `state` kept the identity basis for want of rows that it now has: a
        restart then codes from the store, fitting the basis (the module docstring)."""
        high = int(state["scalars"][1])
        return "rot" not in state and self.dim >= SPLIT_MIN_DIM and high >= ROTATE_MIN_ROWS

    def restore(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        """Take `state` (from `state`, read back from a checkpoint) as the codes, grid and
        basis; raises ValueError, changing nothing, when it does not fit this copy."""
        dim = self.dim
        head_dims, high, gridded = (int(v) for v in state["scalars"])
        rot = state.get("rot")
        head, tail = state["head"], state["tail"]
        want = {
            "head": ((high, head_dims), np.int8),
            "tail": ((high, dim - head_dims), np.int8),
            "tail_norm": ((high if rot is not None else 0,), np.float32),
            "sq": ((high if self.metric == "euclidean" else 0,), np.float32),
            "grid": ((5, dim), np.float64),
        }
        if rot is not None:
            want["rot"] = ((dim, dim), np.float64)
        for name, (shape, dtype) in want.items():
            got = state[name]
            if got.shape != shape or got.dtype != dtype:
                raise ValueError(f"codes {name}: {got.dtype}{got.shape}, want {dtype}{shape}")
        if not 0 < head_dims <= dim or (rot is None) != (head_dims == dim):
            raise ValueError(f"codes: a head of {head_dims} of {dim} dimensions")
        cap = max(self.capacity, high)
        self._rot = None if rot is None else np.ascontiguousarray(rot)
        self.head_dims = head_dims
        self._head = _grown(np.ascontiguousarray(head), cap)
        self._tail = _grown(np.ascontiguousarray(tail), cap)
        self._tail_norm = _grown(np.asarray(state["tail_norm"]), cap if rot is not None else 0)
        self._sq = _grown(np.asarray(state["sq"]), cap if self.metric == "euclidean" else 0)
        self._lo, self._hi, self._mid, self._step, self._err = (
            np.array(row, dtype=np.float64) for row in state["grid"]
        )
        self._gridded, self._high = bool(gridded), high
        self._max_sq = float(state["max_sq"][0])

    def nbytes(self, n_slots: int) -> int:
        per_row = self.dim + (4 if self.metric == "euclidean" else 0) + (4 if self.rotated else 0)
        return n_slots * per_row


A = TypeVar("A", npt.NDArray[np.int8], npt.NDArray[np.float32])


def _grown(arr: A, n: int) -> A:
    """`arr` with rows up to `n`, the new ones zero."""
    out = np.zeros((n, *arr.shape[1:]), dtype=arr.dtype)
    out[: len(arr)] = arr
    return out
