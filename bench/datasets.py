"""The one data set loader of the benchmarks: the shared set (or a subsample), its metadata,
and exact (optionally filtered) ground truth."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
GT_FILE = "gt_cosine_top100.npy"


SAMPLE = "the bundled sample (cluster/sample: 4,000 PyPI summaries x 384, 50 queries)"


class MissingData(FileNotFoundError):
    """The data set a benchmark needs is not where it looked; the message says what to pass."""


def default_data() -> Path:
    """$SHARDVEC_SHARED_DATA (the set or its parent), else ../shared/data/pypi-minilm-100k."""
    env = os.environ.get("SHARDVEC_SHARED_DATA")
    if env:
        path = Path(env)
        return path if (path / "base.npy").exists() else path / "pypi-minilm-100k"
    return REPO.parent / "shared" / "data" / "pypi-minilm-100k"


def require_data(data: Path) -> Path:
    """`data` when it holds a data set (base.npy and queries.npy), else MissingData naming
    what a user passes instead."""
    missing = [f for f in ("base.npy", "queries.npy") if not (data / f).exists()]
    if missing:
        raise MissingData(
            f"no data set at {data} (missing {', '.join(missing)}). Pass --data DIR (or set "
            "SHARDVEC_SHARED_DATA) to a directory holding base.npy (n x dim embeddings), "
            "queries.npy and, for metadata filters, base_texts.jsonl, e.g. the 100k x 384 "
            "pypi-minilm-100k set; `shardvec bench rows` and `shardvec bench reshard` run on "
            f"{SAMPLE} when none is given and the default is absent."
        )
    return data


@dataclass(frozen=True)
class Dataset:
    """Normalised float32 base rows (row i has id str(i)), queries, and exact top-k row ids."""

    base: npt.NDArray[np.float32]
    queries: npt.NDArray[np.float32]
    gt: npt.NDArray[np.int64]
    gt_source: str

    @property
    def dim(self) -> int:
        return int(self.base.shape[1])


def normalised(arr: np.ndarray) -> npt.NDArray[np.float32]:
    out = np.array(arr, dtype=np.float32)  # a copy: `arr` may be a read-only memory map
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def brute_force_topk(
    base: npt.NDArray[np.float32], queries: npt.NDArray[np.float32], k: int, block: int = 128
) -> npt.NDArray[np.int64]:
    """Exact top-k by inner product (= cosine on normalised rows); ties go to the lower id."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), block):
        scores = queries[start : start + block] @ base.T
        out[start : start + block] = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return out


def base_rows(data: Path) -> int:
    """How many base rows the set at `data` holds (read from the file's header only)."""
    require_data(data)
    return len(np.load(data / "base.npy", mmap_mode="r"))


def load_vectors(
    data: Path, n: int | None, n_queries: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """The first `n` base rows (all when None) and the first `n_queries` queries as contiguous
    float32, as stored (not normalised: the engine and the cluster normalise for cosine)."""
    require_data(data)
    base = np.load(data / "base.npy", mmap_mode="r")
    queries = np.load(data / "queries.npy", mmap_mode="r")
    return (np.ascontiguousarray(base[: len(base) if n is None else n], dtype=np.float32),
            np.ascontiguousarray(queries[:n_queries], dtype=np.float32))  # fmt: skip


def load_jsonl(path: Path, n: int | None = None) -> list[dict[str, Any]]:
    """The first `n` records (all when None) of a JSON Lines file, e.g. base_texts.jsonl."""
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if len(rows) == n:
                break
            rows.append(json.loads(line))
    return rows


def load_dataset(data: Path, n: int | None, n_queries: int, k: int) -> Dataset:
    """The first `n` base rows (all when None) and the first `n_queries` queries, normalised.

    The stored exact top-100 is used when every base row is kept; a subsample gets its ground
    truth by brute force in NumPy.
    """
    raw_base, raw_queries = load_vectors(data, n, n_queries)
    base, queries = normalised(raw_base), normalised(raw_queries)
    if len(base) == base_rows(data) and (data / GT_FILE).exists():
        gt = np.asarray(np.load(data / GT_FILE)[: len(queries), :k], dtype=np.int64)
        return Dataset(base, queries, gt, GT_FILE)
    return Dataset(base, queries, brute_force_topk(base, queries, k), "numpy brute force")


META_FIELDS = ("name", "month", "year", "popular", "rank")
FILTER_WHERE = {"month": "2026-10"}  # 9.6 % of the shared set's rows


def load_metadata(
    data: Path, n: int, fields: tuple[str, ...] = META_FIELDS
) -> tuple[list[dict[str, Any]], str]:
    """Metadata of the first `n` base rows: the given fields of base_texts.jsonl (line i
    describes row i), or, when the set has no such file (the CI's synthetic set), seeded
    stand-ins with the same fields (month cycles over 10 values, so the filter keeps 10 %)."""
    path = data / "base_texts.jsonl"
    if path.exists():
        rows = [{key: rec[key] for key in fields if key in rec} for rec in load_jsonl(path, n)]
        if len(rows) < n:
            raise ValueError(f"{path} has {len(rows)} rows, the base {n}")
        return rows, "base_texts.jsonl"
    months = [f"2026-{m:02d}" for m in range(1, 11)]
    synthetic = [
        {"name": f"pkg-{i}", "month": months[i % 10], "year": 2026, "popular": i % 50 == 0,
         "rank": -1}
        for i in range(n)
    ]  # fmt: skip
    return [{key: r[key] for key in fields if key in r} for r in synthetic], "synthetic"


def matching_rows(meta: list[dict[str, Any]], where: dict[str, Any]) -> npt.NDArray[np.int64]:
    """Rows whose metadata equals every (field, value) of a flat equality filter."""
    keep = [i for i, m in enumerate(meta) if all(m.get(f) == v for f, v in where.items())]
    return np.asarray(keep, dtype=np.int64)


def filtered_topk(
    base: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
    rows: npt.NDArray[np.int64],
    k: int,
) -> npt.NDArray[np.int64]:
    """Exact top-k row ids among `rows` (NumPy brute force; -1 where fewer than k rows)."""
    out = np.full((len(queries), k), -1, dtype=np.int64)
    if len(rows) == 0:
        return out
    top = brute_force_topk(base[rows], queries, min(k, len(rows)))
    out[:, : top.shape[1]] = rows[top]
    return out


# ---------------------------------------------------------------- a set grown past its rows

GROW_SEED = 26  # issue 26: the million-row benchmark (`shardvec bench rows`)
GROW_WEIGHTS = (0.6, 0.9)
GROW_BLOCK = 65_536  # extra rows drawn from one generator


def grow_rows(
    real: npt.NDArray[np.float32], n: int, seed: int = GROW_SEED
) -> npt.NDArray[np.float32]:
    """`n` unit rows: the `len(real)` real rows (normalised), then extra rows, each the
    normalised blend w * real[a] + (1 - w) * real[b] of two distinct real rows a, b drawn
    uniformly, w uniform in GROW_WEIGHTS. The extra rows are drawn in blocks of GROW_BLOCK,
    block j from `default_rng([seed, j])`, so row i is the same whatever `n`; `n` at most
    the real rows: their first `n`.

    A blend stays near its main parent, so the grown set keeps the real set's neighbourhoods
    (each query's neighbours are real rows and blends of them) rather than filling space
    with noise that no query is near."""
    n0 = len(real)
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    out[: min(n, n0)] = normalised(real[: min(n, n0)])
    for j, s in enumerate(range(n0, n, GROW_BLOCK)):
        e = min(s + GROW_BLOCK, n)
        rng = np.random.default_rng([seed, j])
        a = rng.integers(0, n0, GROW_BLOCK)[: e - s]
        b = (a + rng.integers(1, n0, GROW_BLOCK)[: e - s]) % n0  # uniform over the others
        w = rng.uniform(*GROW_WEIGHTS, GROW_BLOCK)[: e - s].astype(np.float32)[:, None]
        rows = w * out[a] + (1.0 - w) * out[b]
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        out[s:e] = rows
    return out


def chunked_topk(
    base: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
    k: int,
    rows: npt.NDArray[np.int64] | None = None,
    chunk: int = 65_536,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Exact top-k row ids and inner products of each query over `base` (or only its `rows`),
    scanning `chunk` rows at a time so a million rows need no (queries x rows) matrix; ties go
    to the lower id. -1 / -inf where fewer than k rows."""
    nq = len(queries)
    best_ids = np.full((nq, k), -1, dtype=np.int64)
    best = np.full((nq, k), -np.inf, dtype=np.float32)
    total = len(base) if rows is None else len(rows)
    for s in range(0, total, chunk):
        e = min(s + chunk, total)
        ids = np.arange(s, e, dtype=np.int64) if rows is None else rows[s:e]
        scores = queries @ (base[s:e] if rows is None else base[ids]).T
        take = min(k, e - s)
        part = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        cand_ids = np.concatenate([best_ids, ids[part]], axis=1)
        cand = np.concatenate([best, np.take_along_axis(scores, part, axis=1)], axis=1)
        # best score first, then the lower id (a -1 pad sorts last: its score is -inf)
        key = np.where(cand_ids < 0, np.iinfo(np.int64).max, cand_ids)
        order = np.lexsort((key, -cand), axis=1)[:, :k]
        best_ids = np.take_along_axis(cand_ids, order, axis=1)
        best = np.take_along_axis(cand, order, axis=1)
    return best_ids, best
