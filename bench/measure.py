"""What every benchmark measures the same way: recall@k of what a search found, and the summary
of a run of concurrent single-query clients (LoadResult)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

IdRows = npt.NDArray[Any] | Sequence[Iterable[Any]]


def _id_set(row: Iterable[Any], k: int) -> set[str]:
    """The first k ids of one row as strings; -1 (no hit, or padding) is left out."""
    out: set[str] = set()
    for n, value in enumerate(row):
        if n == k:
            break
        text = str(value.item() if isinstance(value, np.generic) else value)
        if text != "-1":
            out.add(text)
    return out


def recall_at_k(found: IdRows, truth: IdRows, k: int) -> float:
    """Mean over queries of |found_j[:k] ∩ truth_j[:k]| / |truth_j[:k]|.

    Ids are compared as strings, so row numbers (int arrays, -1 for no hit) and the cluster's
    string ids mix freely; truth rows may be shorter than k (a labelled set of relevant ids).
    `truth` may hold more queries than `found`: its first len(found) rows are used.
    """
    if len(found) == 0:
        return 0.0
    total = 0.0
    for f_row, t_row in zip(found, truth, strict=False):
        want = _id_set(t_row, k)
        if want:
            total += len(_id_set(f_row, k) & want) / len(want)
    return total / len(found)


def ids_to_rows(ids: Sequence[Sequence[str]], k: int) -> npt.NDArray[np.int64]:
    """String ids "123" per query (as the cluster returns them) as an (nq, k) int array."""
    out = np.full((len(ids), k), -1, dtype=np.int64)
    for j, row in enumerate(ids):
        vals = [int(i) for i in row[:k]]
        out[j, : len(vals)] = vals
    return out


@dataclass
class LoadResult:
    """Concurrent single-query clients: throughput, latency, errors, and the recall of what
    came back. `processes` x `threads` clients when they run in processes of threads
    (`threads` 0: coroutines on one event loop)."""

    clients: int
    seconds: float
    calls: int
    errors: int
    qps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    recall: float
    first_error: str = ""
    processes: int = 1
    threads: int = 0
    mode: str = ""
    client_cpu_ms_per_query: float | None = None
    per_process_calls: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
