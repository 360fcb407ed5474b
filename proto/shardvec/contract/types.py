"""The plain values a shard engine hands out: rows, search results, changes, planner knobs."""

from __future__ import annotations

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
class SearchResult:
    """Per query row: ids (object, "" padding), scores (float32, NaN padding), hit counts."""

    ids: np.ndarray
    scores: np.ndarray
    counts: np.ndarray


@dataclass(frozen=True)
class Change:
    """A row's latest state for replica catch-up; a tombstone has deleted=True and no data."""

    id: str
    seq: int
    vector: np.ndarray | None
    metadata: dict[str, Any] | None
    deleted: bool
