"""The storage engine of one shard replica: SQLite rows, an hnswlib index, filter columns.

Source of truth is the SQLite store (shard/store.py); the HNSW index (shard/index.py, labelled
by the slot table of shard/slots.py) and the filter columns (shard/columns.py) are derived and
rebuilt from it when needed. Every write batch is committed to SQLite before the in-memory
state changes, so a crash after an acknowledged write loses nothing: the next open
(shard/recovery.py) loads the checkpoint (shard/checkpoint.py) and replays newer rows, or
rebuilds from the store.

`ShardEngine` is the facade: it holds the state and the locks, checks it is usable, and
delegates each call to the module of its concern: reads (shard/reads.py, searches planned by
shard/planner.py), atomic writes in two phases (shard/staging.py, the staged batch's format in
shard/staged_batch.py), catch-up from a peer (shard/catchup.py) and keyword search
(shard/keyword_search.py over shard/bm25.py). They see the engine as shard/engine_state.py's
`EngineState` and change its in-memory state only through `_apply`.

Locks, always taken in this order: `_write_mutex` serialises writers (stage, resolve,
apply_changes, checkpoint, close); `index.lock` (readers-writer, shard/rwlock.py) covers the
index together with the slot table and columns, so a search sees one consistent state and
searches run alongside each other; a writer takes it (for writing in `_apply`, for reading in
a checkpoint) only while holding `_write_mutex`, and a reader never takes `_write_mutex`.

Validation is not the engine's: every call takes a request checked where it was built (the
coordinator's edge for the shard service's requests, shardvec.contract.shard_requests for the
in-process replica's and tests'), and the engine has one method per call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shardvec.contract.errors import DataLoss, FailedPrecondition, ShardvecError
from shardvec.contract.facets import FacetCounts, check_field_name
from shardvec.contract.filters import (
    DocFilter,
    Filter,
)
from shardvec.contract.groups import GroupResult, ShardGroupSearch
from shardvec.contract.heap import HeapTrim
from shardvec.contract.limits import (
    CHECKPOINT_SHARE,
    DEFAULT_BUILD_THREADS,
    DEFAULT_CHECKPOINT_ROWS,
    DEFAULT_SEARCH_THREADS,
    SWEEP_GRACE_S,
)
from shardvec.contract.settings import IndexSettings
from shardvec.contract.shard_requests import RowBatch
from shardvec.contract.store_copy import INDEX_FILE, MANIFEST_FILE, STORE_FILE
from shardvec.contract.types import (
    Change,
    KeywordSearch,
    KeywordStats,
    Record,
    ScrollPage,
    SearchResult,
    ShardScroll,
    WriteAck,
)
from shardvec.contract.validation import (
    check_int,
)
from shardvec.shard import catchup, facets, groups, keyword_search, reads, staging
from shardvec.shard.bm25 import PostingCache, QueryTokenizer
from shardvec.shard.checkpoint import write_checkpoint
from shardvec.shard.columns import MetadataColumns
from shardvec.shard.index import HnswIndex
from shardvec.shard.planner import PlannerSettings, SearchPlanner
from shardvec.shard.recovery import recover
from shardvec.shard.row_vectors import RowVectors
from shardvec.shard.rowdata import RowData
from shardvec.shard.slots import SlotPlan, SlotTable
from shardvec.shard.staged_batch import Staged, Updated, load_staged
from shardvec.shard.staging import UpdatePlan
from shardvec.shard.store import Store

INFO_LOCK_S = 0.05  # info() waits this long for the index lock, then gives older sizes

log = logging.getLogger(__name__)


class ShardEngine:
    """Durable vector rows with HNSW search and metadata filters, for one replica."""

    def __init__(
        self,
        directory: Path,
        settings: IndexSettings,
        *,
        search_threads: int = DEFAULT_SEARCH_THREADS,
        build_threads: int = DEFAULT_BUILD_THREADS,
        checkpoint_rows: int = DEFAULT_CHECKPOINT_ROWS,
        planner: PlannerSettings | None = None,
        owner: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        for name, value in (
            ("search_threads", search_threads),
            ("build_threads", build_threads),
            ("checkpoint_rows", checkpoint_rows),
        ):
            check_int(name, value, 1, 1 << 40)
        self.settings = settings
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._rows = RowData(settings.dim, settings.metric, settings.payload_on_disk)
        self._planner = SearchPlanner(
            planner or PlannerSettings(), settings.metric, search_threads, self._rows
        )
        self._build_threads = build_threads
        self._checkpoint_rows = checkpoint_rows
        self._write_mutex = threading.Lock()
        # `clock` says what "now" is for expiry (unix seconds): tests give their own.
        self._slots = SlotTable(clock)
        self.swept = 0  # expired rows the sweep removed since this engine opened
        self._sizes: dict[str, int] = {}  # info()'s last sizes, and when they were taken
        self._sizes_at = 0.0
        self._columns = MetadataColumns()
        self._dirty = 0
        self._heap = HeapTrim()  # freed heap memory back to the system (contract/heap.py)
        self._checkpoint_seq = 0
        self._last_checkpoint_unix: float | None = None
        self._closed = False
        self._broken: str | None = None
        self._damage: str | None = None  # why the store failed a check (DataLoss), if it did
        stale = [f for f in (INDEX_FILE, MANIFEST_FILE) if (self.directory / f).exists()]
        if stale and not (self.directory / STORE_FILE).exists():
            raise DataLoss(
                f"store {self.directory / STORE_FILE} is gone but {stale[0]} is there: "
                "the replica's rows were lost"
            )
        self._store = Store(self.directory, settings, owner)
        self._rows.bind_source(RowVectors(self))  # rescoring reads the store by slot
        self._tokenizer: QueryTokenizer | None = None  # made by the first keyword search
        self._postings = PostingCache()
        self._staged: dict[int, Staged] = {}
        try:
            self._applied_seq = self._store.applied_seq()
            self._index = self._recover()
            self._load_staged()
            self._synced_generation = self._store.generation  # memory is the store now
            self._heap.trim()  # what recovery read and freed
        except BaseException:
            self._store.close()
            raise
        self.info()  # the sizes, taken once with nothing holding the lock

    # ------------------------------------------------------------------------- recovery

    def _recover(self) -> HnswIndex:
        """Open the index (shard/recovery.py), then checkpoint when that took real work."""
        got = recover(
            self.directory,
            self.settings,
            self._store,
            self._slots,
            self._columns,
            self._rows,
            self._applied_seq,
            self._build_threads,
        )
        self._index, self._dirty = got.index, got.dirty
        self._checkpoint_seq, self._last_checkpoint_unix = got.checkpoint_seq, got.checkpoint_unix
        stale_files = any((self.directory / f).exists() for f in (INDEX_FILE, MANIFEST_FILE))
        if (got.rebuilt and (self._dirty or stale_files)) or self._checkpoint_due():
            try:
                self._checkpoint_locked()
            except OSError as exc:
                log.warning("%s: checkpoint after recovery failed: %s", self.directory, exc)
        return got.index

    # ---------------------------------------------------------------------------- state

    @property
    def applied_seq(self) -> int:
        """Highest batch sequence number applied (0 for a new replica)."""
        return self._applied_seq

    @property
    def damage(self) -> str | None:
        """Why this replica's store is damaged (every call then raises DataLoss), or None."""
        return self._damage

    def mark_damaged(self, reason: str) -> None:
        """The store failed a check while serving (scrub, get, changes): stop serving."""
        if self._damage is None:
            self._damage = reason
            log.error("%s: store damaged, out of service: %s", self.directory, reason)

    def verify_rows(self, after_id: str, limit: int) -> tuple[int, str | None]:
        """Check up to `limit` row checksums after `after_id` (the scrub's step)."""
        self._check_usable()
        try:
            return self._store.verify_rows(after_id, limit)
        except DataLoss as exc:
            self.mark_damaged(exc.message)
            raise

    def _check_usable(self) -> None:
        if self._closed:
            raise FailedPrecondition(f"engine at {self.directory} is closed")
        if self._damage is not None:
            raise DataLoss(f"replica at {self.directory} is damaged: {self._damage}")
        if self._broken is not None:
            raise ShardvecError(f"engine at {self.directory} must be reopened: {self._broken}")

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
    ) -> None:
        """Apply a committed batch to the index, slot tables, columns and row data; `texts` are
        the metadata JSON texts as stored, `documents` the upserted rows' documents (empty:
        none), `updated` the rows whose metadata/document (and expiry) changed in place,
        `expires` the upserted rows' absolute expiries (None: none expires), `seqs` the
        upserted rows' own seqs where they differ from `seq` (a peer's, in catch-up)."""
        try:
            with self._index.lock.write():
                if plan.del_slots:
                    dels = np.asarray(plan.del_slots, dtype=np.int64)
                    self._index.mark_deleted(dels)
                    self._columns.clear(dels)
                    self._rows.clear(dels)
                if up_ids and vectors is not None:
                    ups = np.asarray(plan.up_slots, dtype=np.int64)
                    self._index.add(vectors, ups, num_threads=self._build_threads)
                    self._columns.set(ups, metadatas)
                    self._rows.set(ups, vectors, texts, seq if seqs is None else seqs)
                    self._rows.set_documents(ups, documents or [None] * len(up_ids))
                if updated is not None and len(updated.slots):
                    self._columns.set(updated.slots, updated.metadatas)
                    self._rows.set_texts(updated.slots, updated.texts, seq)
                    self._rows.set_documents(updated.slots, updated.documents)
                    if updated.expires is not None:
                        self._slots.set_expiry(updated.slots, updated.expires)
                self._slots.apply(plan, up_ids, expires)
                self._synced_generation = self._store.generation  # writers are serialised
                self._applied_seq = max(self._applied_seq, seq)
                n_updated = len(updated.slots) if updated is not None else 0
                self._dirty += len(up_ids) + len(plan.del_slots) + n_updated
        except BaseException as exc:
            self._broken = f"a committed batch failed to apply in memory: {exc!r}"
            log.error("%s: %s", self.directory, self._broken)
            raise
        self._heap.wrote(len(up_ids) + len(plan.del_slots) + n_updated)
        if self._checkpoint_due():
            try:
                self._checkpoint_locked()
            except OSError as exc:
                log.warning("%s: automatic checkpoint failed: %s", self.directory, exc)

    def _checkpoint_due(self) -> bool:
        """Enough rows changed since the last checkpoint: `checkpoint_rows`, or a tenth of the
        index's labels once that is more (contract/limits.py CHECKPOINT_SHARE)."""
        share = int(CHECKPOINT_SHARE * self._index.element_count)
        return self._dirty >= max(self._checkpoint_rows, share)

    # --------------------------------------------------------------------------- writes

    def upsert(
        self,
        seq: int,
        ids: Sequence[str],
        vectors: npt.NDArray[np.float32],
        metadatas: Sequence[Mapping[str, Any]] | None = None,
        documents: Sequence[str | None] | None = None,
    ) -> bool:
        """Insert or replace rows as batch `seq` by staging and committing them, the path
        every write takes; False when `seq` was applied already. Benchmarks load rows this
        way; the caller gives distinct valid ids, (n, dim) float32 vectors and (or None) one
        plain metadata object and one document per id (shardvec.contract.shard_requests)."""
        if seq <= self.applied_seq:
            return False
        n = len(ids)
        rows = RowBatch(
            list(ids),
            np.ascontiguousarray(vectors, dtype=np.float32),
            [dict(m) for m in metadatas] if metadatas is not None else [{}] * n,
            list(documents) if documents is not None else [],
            [],
        )
        self.stage(seq, rows)
        return self.resolve(seq, True).applied

    # ----------------------------------------------------------- atomic writes (2 phases)

    def _load_staged(self) -> None:
        """The batches staged before the last stop (shard/staged_batch.py)."""
        self._staged = load_staged(self._store, self.settings.dim, self._applied_seq)
        if self._staged:
            log.info("%s: staged batches awaiting a decision: %s", self.directory,
                     sorted(self._staged))

    def staged_seqs(self) -> list[int]:
        """Seqs of the batches staged here and not yet resolved, ascending."""
        return sorted(self._staged)

    def stage(self, seq: int, batch: RowBatch | UpdatePlan) -> int:
        """Phase one of an atomic write: keep batch `seq` (rows, or an update of existing
        rows) durably, invisible to reads, until `resolve(seq, commit)`. The rows matching a
        delete filter are found now (no other batch can come between this one and its
        commit). An update is checked now against the stored rows: upsert_missing without
        vectors for an id not held, or a merged metadata object past its limit, refuses the
        stage (InvalidArgument naming the row); its upsert_missing ids not held become
        upserts of the batch. Refused with ResourceExhausted when the disk lacks room to
        stage and commit it. Returns the bytes staged (shard/staging.py)."""
        self._check_usable()
        with self._write_mutex:
            self._check_usable()
            return staging.stage(self, seq, batch)

    def resolve(
        self, seq: int, commit: bool, owned: npt.NDArray[np.bool_] | None = None
    ) -> WriteAck:
        """Phase two: apply staged batch `seq` under its seq (`commit`), or drop it.
        `owned`: the routing buckets whose rows the ack counts (None: every row), so a shard
        that also receives copies of rows it does not own yet counts only its own.

        Idempotent: committing a seq this replica already applied answers applied=False; a
        commit of a seq neither staged nor applied is FailedPrecondition (the replica missed
        the stage, or dropped it on an earlier abort), so the coordinator catches it up.
        A batch's update changes its rows in place here, under the write mutex: metadata
        merged with (or replacing) the stored object, the document replaced where given, the
        row rewritten under `seq` with its vector and slot kept."""
        self._check_usable()
        with self._write_mutex:
            self._check_usable()
            return staging.resolve(self, seq, commit, owned)

    def apply_changes(self, changes: Sequence[Change], up_to_seq: int) -> None:
        """Catch up from a peer: apply its rows' latest states (each only if newer than this
        replica's state of that id) in one transaction, then raise applied_seq to `up_to_seq`.

        To copy a peer: `changes, seq = peer.changes_since(mine)`; while changes: apply them
        with `up_to_seq=changes[-1].seq` and ask again from there; finally apply `([], seq)`.
        """
        self._check_usable()
        up_to_seq = check_int("up_to_seq", up_to_seq, 0, 2**63 - 1)
        checked = catchup.check_changes(changes, self.settings)
        with self._write_mutex:
            self._check_usable()
            catchup.apply_changes(self, checked, up_to_seq)

    def changes_since(self, seq: int, limit: int = 10_000) -> tuple[list[Change], int]:
        """Rows and tombstones with seq > `seq`, ascending, at most `limit` (one seq's rows are
        never split across pages), and this replica's applied_seq at read time."""
        self._check_usable()
        seq = check_int("seq", seq, 0, 2**63 - 1)
        limit = check_int("limit", limit, 1, 1_000_000)
        return catchup.changes_since(self, seq, limit)

    def sweep(self, limit: int, grace_s: float = SWEEP_GRACE_S) -> int:
        """Remove up to `limit` rows expired `grace_s` ago or more for good (the sweep's step,
        shard/sweep.py; the grace lets an update accepted by the coordinator just before a
        row's expiry find the row on every replica):
        each becomes a tombstone under its own seq in the store (FTS row gone with it), its
        index label marked deleted, its slot, columns and row data freed, through the path
        every delete takes (`_apply`). Reads hid them already; returns how many it removed.

        No new seq: the coordinator assigns seqs, and every replica reaches the same state on
        its own, since the absolute expiry is the same on all of them (docs/design-notes.md)."""
        self._check_usable()
        limit = check_int("limit", limit, 1, 1 << 30)
        with self._write_mutex:
            self._check_usable()
            now = self._slots.clock() - grace_s
            expired = self._slots.expired(now)
            if expired is None:
                return 0
            slots = np.flatnonzero(expired)[:limit]
            done = self._store.expire(self._slots.slot_to_id[slots].tolist(), now)
            if not done:
                return 0
            plan = self._slots.plan([], done)
            self._apply(plan, [], None, [], [], 0)
            self.swept += len(done)
            return len(done)

    # ---------------------------------------------------------------------------- reads
    # Each takes its request checked (shardvec.contract.shard_requests, or the coordinator's
    # edge): see shard/reads.py.

    def get(
        self,
        ids: Sequence[str],
        *,
        include_vectors: bool = True,
        include_metadata: bool = True,
        include_documents: bool = False,
    ) -> list[Record | None]:
        """Rows by id from the store (vectors as upserted); None for missing or deleted ids."""
        self._check_usable()
        return reads.get(self, ids, include_vectors, include_metadata, include_documents)

    def count(
        self,
        where: Filter | None = None,
        where_document: DocFilter | None = None,
        buckets: npt.NDArray[np.bool_] | None = None,
    ) -> int:
        """Live rows (of `buckets`, None: every row), or those passing `where` and
        `where_document`."""
        self._check_usable()
        return reads.count(self, where, where_document, buckets)

    def scroll(self, request: ShardScroll) -> ScrollPage:
        """The next page of live rows in (bucket, id) order after request's position."""
        self._check_usable()
        return reads.scroll(self, request)

    def search(
        self,
        queries: npt.NDArray[np.float32],
        k: int,
        *,
        where: Filter | None = None,
        ef: int | None = None,
        exact: bool = False,
        min_score: float | None = None,
        max_distance: float | None = None,
        include_metadata: bool = False,
        include_vectors: bool = False,
        include_documents: bool = False,
        where_document: DocFilter | None = None,
        buckets: npt.NDArray[np.bool_] | None = None,
    ) -> SearchResult:
        """Best `k` live rows per query, best first; shard/planner.py says how. With
        `include_metadata` / `include_vectors` / `include_documents`, each hit's stored
        metadata JSON text, vector and document come with it. `ef` None: the settings'."""
        self._check_usable()
        return reads.search(
            self,
            queries,
            k,
            where=where,
            ef=ef,
            exact=exact,
            min_score=min_score,
            max_distance=max_distance,
            include_metadata=include_metadata,
            include_vectors=include_vectors,
            include_documents=include_documents,
            where_document=where_document,
            buckets=buckets,
        )

    def facet(
        self,
        field: str,
        where: Filter | None = None,
        where_document: DocFilter | None = None,
        buckets: npt.NDArray[np.bool_] | None = None,
    ) -> FacetCounts:
        """Every value of metadata `field` with the live rows (of `buckets`) passing both
        filters that hold it (shard/facets.py)."""
        self._check_usable()
        return facets.facet_counts(self, check_field_name(field, "field"), where,
                                   where_document, buckets)  # fmt: skip

    def group_search(self, request: ShardGroupSearch) -> GroupResult:
        """The best groups by a metadata field with their best hits here (shard/groups.py)."""
        self._check_usable()
        check_field_name(request.group.field, "group_by")
        return groups.group_search(self, request)

    # ------------------------------------------------------------------ keyword search

    def _query_tokenizer(self) -> QueryTokenizer:
        if self._tokenizer is None:
            self._tokenizer = QueryTokenizer(self.settings.text_tokenizer)
        return self._tokenizer

    def keyword_stats(
        self, texts: Sequence[str], buckets: npt.NDArray[np.bool_] | None = None
    ) -> KeywordStats:
        """Each text's terms (the collection's tokenizer) with their document frequencies
        here, and this replica's document count and token total (shard/bm25.py);
        `buckets`: of the rows of those routing buckets only (None: every row)."""
        self._check_usable()
        return keyword_search.keyword_stats(self, texts, buckets)

    def keyword_search(self, request: KeywordSearch) -> SearchResult:
        """Per query the best `request.k` live rows by BM25 under the request's (global)
        statistics, best first, filters and payloads as in `search`
        (shard/keyword_search.py)."""
        self._check_usable()
        return keyword_search.keyword_search(self, request)

    # ----------------------------------------------------------------------- lifecycle

    def checkpoint(self) -> None:
        """Write the index checkpoint and its manifest now."""
        self._check_usable()
        with self._write_mutex:
            self._checkpoint_locked()

    def _checkpoint_locked(self) -> None:
        with self._index.lock.read():
            manifest = write_checkpoint(
                self.directory,
                self._index,
                self._applied_seq,
                self._slots.n_slots,
                self._rows.compact.state(),
            )
        self._checkpoint_seq = manifest.seq
        self._last_checkpoint_unix = manifest.created_unix
        self._dirty = 0
        log.info(
            "%s: checkpoint at seq %d (%d bytes)", self.directory, manifest.seq, manifest.index_size
        )

    def info(self) -> dict[str, Any]:
        """Figures of this replica, JSON-serialisable. The health probe asks for them, so
        they never wait long for the index lock (a long search with a write queued holds it
        off): the counters are read as they stand, and the sizes, which walk the index and
        the columns, are taken under the read lock when it comes within INFO_LOCK_S, else
        the last ones taken are given (`sizes_age_s` says how old)."""
        self._check_usable()
        with self._index.lock.try_read(INFO_LOCK_S) as held:
            if held:
                self._sizes = {
                    "slots": self._slots.n_slots,
                    "deleted_slots": len(self._slots.free),
                    "capacity": self._index.capacity,
                    "index_bytes": self._index.nbytes(),
                    "metadata_bytes": self._columns.nbytes(),
                    "expired_rows": len(self._slots) - self._slots.n_visible(),
                }
                self._sizes_at = time.monotonic()
        return {
            "count": max(0, len(self._slots) - self._sizes.get("expired_rows", 0)),
            "expiring_rows": self._slots.n_expiring,
            "swept_rows": self.swept,
            "applied_seq": self._applied_seq,
            "checkpoint_seq": self._checkpoint_seq,
            **self._sizes,
            "sizes_age_s": round(time.monotonic() - self._sizes_at, 3),
            "dirty_rows": self._dirty,
            "settings": self.settings.to_dict(),
            "last_checkpoint_unix": self._last_checkpoint_unix,
            "directory": str(self.directory),
            "staged_seqs": sorted(list(self._staged)),
        }

    def close(self) -> None:
        """Checkpoint if anything changed since the last one, then close the store."""
        with self._write_mutex:
            if self._closed:
                return
            try:
                if self._dirty and self._broken is None and self._damage is None:
                    self._checkpoint_locked()
            except OSError as exc:
                log.warning("%s: checkpoint on close failed: %s", self.directory, exc)
            finally:
                self._closed = True
                self._store.close()
                if self._tokenizer is not None:
                    self._tokenizer.close()
