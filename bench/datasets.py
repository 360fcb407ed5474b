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


def default_data() -> Path:
    """$SHARDVEC_SHARED_DATA (the set or its parent), else ../shared/data/pypi-minilm-100k."""
    env = os.environ.get("SHARDVEC_SHARED_DATA")
    if env:
        path = Path(env)
        return path if (path / "base.npy").exists() else path / "pypi-minilm-100k"
    return REPO.parent / "shared" / "data" / "pypi-minilm-100k"


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
    return len(np.load(data / "base.npy", mmap_mode="r"))


def load_vectors(
    data: Path, n: int | None, n_queries: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """The first `n` base rows (all when None) and the first `n_queries` queries as contiguous
    float32, as stored (not normalised: the engine and the cluster normalise for cosine)."""
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
