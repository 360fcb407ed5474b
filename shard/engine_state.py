"""The state of one ShardEngine as its parts see it: a Protocol, so the modules that hold the
engine's reads, staged writes, catch-up and keyword search (shard/reads.py, staging.py,
catchup.py, keyword_search.py) take the engine without importing shard/engine.py.

The engine (shard/engine.py) owns this state and its locks and calls each part holding the
lock that part's docstring names; a part changes the index, slot table, columns and row data
only through `_apply`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from shardvec.contract.settings import IndexSettings
from shardvec.shard.bm25 import PostingCache, QueryTokenizer
from shardvec.shard.columns import MetadataColumns
from shardvec.shard.index import HnswIndex
from shardvec.shard.planner import SearchPlanner
from shardvec.shard.rowdata import RowData
from shardvec.shard.slots import SlotPlan, SlotTable
from shardvec.shard.staged_batch import Staged, Updated
from shardvec.shard.store import Store


class EngineState(Protocol):
    """What ShardEngine holds: settings, directory, the store and the in-memory state."""

    settings: IndexSettings
    directory: Path
    _store: Store
    _slots: SlotTable
    _columns: MetadataColumns
    _rows: RowData
    _index: HnswIndex
    _planner: SearchPlanner
    _postings: PostingCache
    _staged: dict[int, Staged]
    _checkpoint_seq: int
    # the store's generation when memory last caught up with it (shard/payloads.py)
    _synced_generation: int

    @property
    def applied_seq(self) -> int: ...

    def mark_damaged(self, reason: str) -> None: ...

    def _query_tokenizer(self) -> QueryTokenizer: ...

    def _apply(
        self,
        plan: SlotPlan,
        up_ids: Sequence[str],
        vectors: npt.NDArray[np.float32] | None,
        metadatas: Sequence[Mapping[str, Any]],
        texts: Sequence[str | None],
        seq: int,
        documents: Sequence[str | None] = (),
        updated: Updated | None = None,
        expires: Sequence[float] | None = None,
        seqs: Sequence[int] | None = None,
    ) -> None: ...


def store_is_memory(eng: EngineState, generation: int) -> bool:
    """Whether every store row is the version memory holds: no write of rows had begun at
    `generation` (the store's generation read before the caller's read: odd while rows
    change), memory caught up with the store at it, and none has begun since. The store
    otherwise runs ahead of memory by the batch being applied (shard/payloads.py)."""
    return (
        generation % 2 == 0
        and generation == eng._synced_generation
        and generation == eng._store.generation
    )
