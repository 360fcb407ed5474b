"""The plain domain values that cross a boundary: rows, search results, changes, replica states.

The engine hands out `Record`, `SearchResult` and `Change`; the coordinator merges into `Hits`
and reports `ReplicaStatus`; `shardvec.contract.convert` turns each into its wire form and back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Record:
    """One stored row as `get` returns it; vector/metadata are None when not requested."""

    id: str
    vector: np.ndarray | None
    metadata: dict[str, Any] | None


@dataclass(frozen=True)
class Hit:
    """One search hit as the client returns it; metadata/vector are None when not requested."""

    id: str
    score: float
    metadata: dict[str, Any] | None = None
    vector: np.ndarray | None = None


@dataclass(frozen=True)
class SearchResult:
    """Per query row: ids (object, "" padding), scores (float32, NaN padding), hit counts;
    when asked for, each hit's stored metadata JSON text ((nq, k) object, "" for none or
    padding) and vector ((nq, k, dim) float32, zeros for padding)."""

    ids: np.ndarray
    scores: np.ndarray
    counts: np.ndarray
    metadata: np.ndarray | None = None
    vectors: np.ndarray | None = None


@dataclass(frozen=True)
class Change:
    """A row's latest state for replica catch-up; a tombstone has deleted=True and no data."""

    id: str
    seq: int
    vector: np.ndarray | None
    metadata: dict[str, Any] | None
    deleted: bool


@dataclass
class Hits:
    """Merged results of a query batch: (nq, k) ids ("" padding) and scores, hit counts per
    row, and the hits' stored metadata JSON and vectors by id when they were asked for."""

    ids: np.ndarray
    scores: np.ndarray
    counts: np.ndarray
    metadata: dict[str, str]
    vectors: dict[str, np.ndarray]

    def rows(self, start: int, n: int) -> Hits:
        """Rows [start, start + n): one caller's part of a micro-batch."""
        sl = slice(start, start + n)
        return Hits(self.ids[sl], self.scores[sl], self.counts[sl], self.metadata, self.vectors)


@dataclass(frozen=True)
class ReplicaStatus:
    """One replica as `DescribeCollection` and `shardvec status` report it."""

    shard: int
    replica: int
    state: str
    address: str
    node_id: str
    pid: int
    count: int
    applied_seq: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
