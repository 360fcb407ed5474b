"""Opening a replica's index: from its checkpoint, brought up to the store, or rebuilt.

The SQLite store is the source of truth. Its live rows fill the slot table and the filter
columns first; then the checkpoint is loaded, its stale labels hidden and the rows newer than
it replayed. The compact copy's codes come from the checkpoint too when it holds them (only
the replayed rows are coded), and otherwise from every live row's vector in the store. A
checkpoint ahead of the store means the store lost acknowledged writes (DataLoss); one missing
live rows, or unusable, is dropped and the index rebuilt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shardvec.contract.errors import DataLoss
from shardvec.contract.settings import IndexSettings
from shardvec.shard.checkpoint import Manifest, load_checkpoint, load_codes
from shardvec.shard.columns import MetadataColumns
from shardvec.shard.index import HnswIndex
from shardvec.shard.rowdata import RowData
from shardvec.shard.slots import SlotTable
from shardvec.shard.store import Store
from shardvec.shard.store_rows import decode_metadata, decode_vector_rows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recovered:
    """The index a replica opens with, and how it was obtained."""

    index: HnswIndex
    rebuilt: bool
    dirty: int  # rows changed since the loaded checkpoint (every row when rebuilt)
    checkpoint_seq: int  # 0 when no checkpoint was used
    checkpoint_unix: float | None


@dataclass(frozen=True)
class _Replica:
    """What recovery reads and fills: the replica's store, tables and settings."""

    directory: Path
    settings: IndexSettings
    store: Store
    slots: SlotTable
    coding: RowData | None  # codes the rows it replays (the rest came from the checkpoint)
    build_threads: int


def recover(
    directory: Path,
    settings: IndexSettings,
    store: Store,
    slots: SlotTable,
    columns: MetadataColumns,
    rows_data: RowData,
    applied_seq: int,
    build_threads: int,
) -> Recovered:
    """Fill `slots`, `columns` and `rows_data` from the store, then load the checkpoint
    (replaying newer rows) or, when it is unusable, rebuild the index from the store."""
    loaded = load_checkpoint(directory, settings)
    if loaded is not None and loaded[1].seq > applied_seq:
        raise DataLoss(
            f"store {store.path} is at seq {applied_seq} but the index "
            f"checkpoint is at seq {loaded[1].seq}: the store lost acknowledged writes"
        )
    # the checkpoint's codes taken: only the rows replayed are coded; else every live row is
    coded = loaded is not None and _restore_codes(directory, loaded[1], rows_data)
    dim, where = settings.dim, f"store {store.path}"
    for rows in store.live_index():  # one pass over every live row, each checksum checked
        labels = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        buckets = np.fromiter((r[5] for r in rows), dtype=np.int16, count=len(rows))
        expires = [r[6] or 0.0 for r in rows]
        # buckets as stored: no rehash
        slots.load([r[0] for r in rows], labels, buckets, expires if any(expires) else None)
        texts = [r[3] for r in rows]
        columns.set(labels, [decode_metadata(t) for t in texts])
        # on_disk: only each row's seq is kept (shard/rowdata.py)
        rows_data.set_texts(labels, texts, [r[2] for r in rows])
        rows_data.set_documents(labels, [r[4] for r in rows])
        if not coded:
            rows_data.set_vectors(labels, decode_vector_rows([r[7] for r in rows], dim, where))
    rep = _Replica(directory, settings, store, slots, rows_data if coded else None, build_threads)
    out: Recovered | None = None
    if loaded is not None:
        index, manifest = loaded
        slots.reserve(manifest.n_slots)
        dirty = _reconcile(rep, index, manifest.seq)
        if dirty is not None:
            out = Recovered(index, False, dirty, manifest.seq, manifest.created_unix)
    if out is None:
        index, added = _rebuild(rep)
        out = Recovered(index, True, added, 0, None)
    slots.rebuild_free()
    return out


def _reconcile(rep: _Replica, index: HnswIndex, seq: int) -> int | None:
    """Bring a loaded checkpoint up to the store; the rows it changed, or None if it cannot
    be trusted."""
    with index.lock.write():
        labels = index.labels()
        if len(labels):
            rep.slots.reserve(int(labels.max()) + 1)
        alive = rep.slots.alive
        hidden = index.mark_deleted(labels[~alive[labels]])
        replayed = _add_from_store(rep, index, after_seq=seq)
        present = np.zeros(len(alive), dtype=np.bool_)
        present[index.labels()] = True
        missing = int((alive & ~present).sum())
    if missing:
        log.warning("%s: checkpoint lacks %d live rows; rebuilding", rep.directory, missing)
        return None
    log.info(
        "%s: loaded checkpoint at seq %d, replayed %d rows, hid %d stale labels",
        rep.directory,
        seq,
        replayed,
        hidden,
    )
    return replayed + hidden


def _rebuild(rep: _Replica) -> tuple[HnswIndex, int]:
    """A new index of every live row in the store, and how many rows it holds."""
    index = HnswIndex(rep.settings)
    with index.lock.write():
        index.ensure_capacity(rep.slots.n_slots)
        added = _add_from_store(rep, index, after_seq=-1)
    if added:
        log.warning("%s: rebuilt the index from the store (%d rows)", rep.directory, added)
    return index, added


def _add_from_store(rep: _Replica, index: HnswIndex, after_seq: int) -> int:
    added = 0
    for labels, vecs in rep.store.live_vectors(rep.settings.dim, after_seq):
        index.add(vecs, labels, num_threads=rep.build_threads)
        if rep.coding is not None:
            rep.coding.set_vectors(labels, vecs)
        added += len(labels)
    return added


def _restore_codes(directory: Path, manifest: Manifest, rows_data: RowData) -> bool:
    """Take the compact codes the checkpoint holds; False when it holds none usable."""
    state = load_codes(directory, manifest)
    if state is None:
        return False
    if rows_data.compact.would_refit(state):
        return False
    try:
        rows_data.compact.restore(state)
    except (ValueError, KeyError) as exc:
        log.warning("%s: checkpoint codes do not fit, coding from the store: %s", directory, exc)
        return False
    return True
