"""The plain domain values that cross a boundary: rows, search results, changes, replica states.

The engine hands out `Record`, `SearchResult` and `Change`; the coordinator merges into `Hits`
and reports `ReplicaStatus`; the shard interface (shard_api.ShardLike) takes and returns
`WriteAck`, `GetResult`, `ShardSearch`, `ShardInfo` and `SnapshotChunk`;
`shardvec.contract.convert_shard` (and `convert_public` for the public API) turns each into
its wire form and back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from shardvec.contract.filters import DocFilter, Filter


@dataclass(frozen=True)
class Record:
    """One stored row as `get` returns it; vector/metadata are None when not requested, and
    document is None when not requested or the row has none. `expires_at`: the row's absolute
    expiry in unix seconds (0.0: never), always filled."""

    id: str
    vector: np.ndarray | None
    metadata: dict[str, Any] | None
    document: str | None = None
    expires_at: float = 0.0

    def __repr__(self) -> str:
        expiry = f", expires_at={self.expires_at!r}" if self.expires_at else ""
        return (f"Record(id={self.id!r}, vector={_vector_repr(self.vector)}, "
                f"metadata={self.metadata!r}, document={self.document!r}{expiry})")


@dataclass(frozen=True)
class Hit:
    """One search hit as the client returns it; metadata/vector are None when not requested."""

    id: str
    score: float
    metadata: dict[str, Any] | None = None
    vector: np.ndarray | None = None
    document: str | None = None
    group: Any = None  # a grouped search's group value (string, number or boolean)

    def __repr__(self) -> str:
        group = f", group={self.group!r}" if self.group is not None else ""
        return (f"Hit(id={self.id!r}, score={self.score:.4f}, metadata={self.metadata!r}, "
                f"vector={_vector_repr(self.vector)}, document={self.document!r}{group})")


def _vector_repr(vector: np.ndarray | None) -> str:
    """A vector in a repr: its first values and its size, not hundreds of floats."""
    if vector is None:
        return "None"
    head = ", ".join(f"{float(x):.4g}" for x in vector[:3])
    more = ", ..." if len(vector) > 3 else ""
    return f"<{vector.dtype}[{len(vector)}]: {head}{more}>"


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
    documents: np.ndarray | None = None  # (nq, k) object, "" for none or padding, when asked


@dataclass(frozen=True)
class Change:
    """A row's latest state for replica catch-up; a tombstone has deleted=True and no data."""

    id: str
    seq: int
    vector: np.ndarray | None
    metadata: dict[str, Any] | None
    deleted: bool
    document: str | None = None
    expires_at: float = 0.0  # absolute unix seconds; 0.0: never


@dataclass
class Hits:
    """Merged results of a query batch: (nq, k) ids ("" padding) and scores, hit counts per
    row, and, when they were asked for, the hits' stored metadata JSON texts ((nq, k)) and
    vectors ((nq, k, dim)), each beside its hit."""

    ids: np.ndarray
    scores: np.ndarray
    counts: np.ndarray
    metadata: np.ndarray | None = None
    vectors: np.ndarray | None = None
    documents: np.ndarray | None = None

    def rows(self, start: int, n: int) -> Hits:
        """Rows [start, start + n): one caller's part of a micro-batch."""
        sl = slice(start, start + n)
        return Hits(
            self.ids[sl],
            self.scores[sl],
            self.counts[sl],
            self.metadata[sl] if self.metadata is not None else None,
            self.vectors[sl] if self.vectors is not None else None,
            self.documents[sl] if self.documents is not None else None,
        )

    def pick(self, positions: Sequence[Sequence[int]], width: int) -> Hits:
        """Per query row, the hits at `positions` (in that order) into `width` columns, padded
        as a search pads ("" ids, NaN scores, "" texts, zero vectors)."""
        take, counts, real = pick_plan(positions, width)
        ids = pick_columns(self.ids, take, real, "")
        scores = pick_columns(self.scores, take, real, np.nan)
        assert ids is not None and scores is not None
        return Hits(
            ids,
            scores,
            counts,
            pick_columns(self.metadata, take, real, ""),
            pick_columns(self.vectors, take, real, 0.0),
            pick_columns(self.documents, take, real, ""),
        )


def pick_plan(
    positions: Sequence[Sequence[int]], width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (nq, width) gather index of `positions`, each row's count, and which cells are real."""
    nq = len(positions)
    take = np.zeros((nq, width), dtype=np.int64)
    counts = np.zeros(nq, dtype=np.int32)
    for qi, row in enumerate(positions):
        take[qi, : len(row)] = row
        counts[qi] = len(row)
    real = np.arange(width)[None, :] < counts[:, None]
    return take, counts, real


def pick_columns(a: np.ndarray | None, take: np.ndarray, real: np.ndarray, fill: object
                 ) -> np.ndarray | None:  # fmt: skip
    """`a`'s cells at `take` per row ((nq, width, ...)), `fill` where `real` is False."""
    if a is None:
        return None
    out: np.ndarray = a[np.arange(len(take))[:, None], take]
    out[~real] = fill
    return out


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
    reason: str = ""  # why it is out of service, when DAMAGED

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TunedBreadth:
    """The search breadth the recall tuner (coordinator/queries/recall_tuner.py) set for a
    collection: the per-shard `ef` its searches without one use while the view has `shards`
    shards, the recall@10 measured at it over `queries` sampled queries, and what it was
    measured on (rows, layout version, target, when)."""

    ef: int
    shards: int
    recall: float
    queries: int
    rows: int
    layout_version: int
    target: float
    tuned_unix: float


# The shard interface's values (shardvec.contract.shard_api.ShardLike).


@dataclass(frozen=True)
class WriteAck:
    """A replica's answer to one write: whether batch `seq` was new to it, rows it changed,
    and its applied_seq afterwards."""

    applied: bool
    affected: int
    applied_seq: int
    missing_ids: tuple[str, ...] = ()  # update: ids the shard does not hold (none inserted)
    inserted: int = 0  # update with upsert_missing: rows inserted


@dataclass(frozen=True)
class ShardUpdate:
    """One shard's part of an Update: per id, metadata JSON to merge (or, with
    replace_metadata, to store) and/or a document; `metadata_json` / `documents` empty leave
    that part unchanged, and an empty text in them leaves that row's part unchanged. With
    upsert_missing, ids the shard lacks are inserted from `vectors` (one row per id)."""

    ids: list[str]
    metadata_json: list[str]
    documents: list[str]
    replace_metadata: bool = False
    upsert_missing: bool = False
    vectors: np.ndarray | None = None
    max_metadata_bytes: int = 0  # the merged object's limit (0: the default)
    # `vectors` also holds the new vector of every row whose document is given (a collection
    # that embeds its documents): such a row is rewritten whole, its vector with its text.
    reembed: bool = False
    # Expiry (absolute unix seconds, computed once by the coordinator): one per id, 0.0 to
    # clear it, or empty: each row keeps its expiry. `insert_expires_at`: the expiry of rows
    # that upsert_missing inserts when `expires_at` is empty (the collection default; 0.0 none).
    expires_at: Sequence[float] = ()
    insert_expires_at: float = 0.0
    # The coordinator's clock when it accepted the update (0.0: the replica's own): whether a
    # row had expired (so is missing) is judged by it on every replica alike.
    accepted_at: float = 0.0


@dataclass(frozen=True, eq=False)
class ShardWrite:
    """One shard's part of an atomic batch: a batch of row changes, applied whole under one
    seq. Tombstones first (`delete_ids`, or the live rows matching `delete_where`, resolved
    when staged), then the upserts (`ids`, (n, dim) float32 `vectors`, `metadata_json` one
    text per row or empty for {} everywhere, `documents` one per row or empty for none); an id
    both deleted and upserted ends upserted. `update` changes existing rows in place (vectors
    kept) in the same batch, after the upserts; its upsert_missing ids the shard lacks become
    upserts of the batch when it is staged. A write with an update has no other rows."""

    ids: Sequence[str] = ()
    vectors: np.ndarray | None = None
    metadata_json: Sequence[str] = ()
    delete_ids: Sequence[str] = ()
    delete_where: Filter | None = None
    documents: Sequence[str] = ()
    update: ShardUpdate | None = None
    # The upserts' absolute expiries (unix seconds, 0.0: never), one per row, or empty: none.
    expires_at: Sequence[float] = ()
    # The routing buckets whose rows its ack counts (None: every row): set while a layout
    # change may put a row on two shards, so an affected count counts rows, not copies.
    owned: np.ndarray | None = None

    @property
    def rows(self) -> int:
        updated = len(self.update.ids) if self.update is not None else 0
        return len(self.ids) + len(self.delete_ids) + updated

    def nbytes(self) -> int:
        vec = int(self.vectors.nbytes) if self.vectors is not None else 0
        texts = sum(len(m) for m in self.metadata_json) + sum(len(d) for d in self.documents)
        if self.update is not None:
            u = self.update
            texts += sum(len(m) for m in u.metadata_json) + sum(len(d) for d in u.documents)
            vec += int(u.vectors.nbytes) if u.vectors is not None else 0
        return vec + texts + 16 * self.rows


@dataclass(frozen=True)
class GetResult:
    """Rows found by a shard get, in request order: ids, their metadata JSON texts (empty when
    not asked for) and their vectors ((n, dim) float32; None when not asked for or none found)."""

    ids: list[str]
    metadata_json: list[str]
    vectors: np.ndarray | None
    documents: list[str] = dataclasses.field(default_factory=list)  # "" for none
    # One absolute expiry per id (0.0: never), or empty: none of these rows expires.
    expires_at: list[float] = dataclasses.field(default_factory=list)


@dataclass(frozen=True, eq=False)
class ShardSearch:
    """One search batch as every shard of a collection receives it.

    eq=False: compared and hashed by identity, so the remote client can serialize one batch
    once and reuse the bytes for every shard it is sent to (see convert.shard_search_payload).
    `ef` None: the shard's own default.
    """

    queries: np.ndarray
    k: int
    exact: bool = False
    ef: int | None = None
    where: Filter | None = None
    min_score: float | None = None
    max_distance: float | None = None
    include_metadata: bool = False  # each hit's stored metadata JSON comes back with it
    include_vectors: bool = False  # and its vector
    include_documents: bool = False  # and its document
    where_document: DocFilter | None = None
    packed: bytes | None = None  # the queries exactly as received, when nothing was merged
    # The buckets this shard answers for (bool over NUM_BUCKETS; None: every row it holds):
    # set by a read view on a shard that may hold rows it does not own
    # (coordinator/queries/read_view.py).
    buckets: np.ndarray | None = None

    @property
    def nq(self) -> int:
        return int(self.queries.shape[0])


@dataclass(frozen=True)
class ShardInfo:
    """A replica's figures: rows, seqs, process and node, and the engine's full info dict."""

    count: int
    applied_seq: int
    checkpoint_seq: int
    pid: int
    node_id: str
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    staged: tuple[int, ...] = ()  # seqs of batches staged and not yet resolved, ascending


@dataclass(frozen=True)
class SnapshotChunk:
    """One piece of a replica's snapshot stream: the manifest JSON first, then file bytes."""

    manifest_json: str = ""
    data: bytes = b""


# Paging (Scroll): one shard's part of a collection-wide walk in (bucket, id) order.


@dataclass(frozen=True)
class ShardScroll:
    """Live rows of one shard after the position (after_bucket, after_id), exclusive, and
    below end_bucket, in (bucket, id) order: at most `limit` rows and (when max_bytes > 0)
    about max_bytes of ids, metadata and vectors, at least one row. after_id "" starts at the
    beginning of after_bucket (ids are never empty)."""

    after_bucket: int
    after_id: str
    end_bucket: int
    limit: int
    where: Filter | None = None
    include_metadata: bool = False
    include_vectors: bool = False
    max_bytes: int = 0
    where_document: DocFilter | None = None
    include_documents: bool = False


@dataclass(frozen=True)
class ScrollPage:
    """One shard's answer to a ShardScroll: the rows in order (metadata JSON "" for none,
    vectors (n, dim) when asked), the position read up to (last_bucket, last_id: at least the
    last row's, further when a filter skipped rows after it), and `done` when no live row
    follows that position below end_bucket."""

    ids: list[str]
    metadata_json: list[str]
    vectors: np.ndarray | None
    last_bucket: int
    last_id: str
    done: bool
    documents: list[str] | None = None  # when asked: one per row, "" for none
    expires_at: list[float] | None = None  # one per row (0.0: never); None: none expires


@dataclass(frozen=True)
class KeywordTerms:
    """One text query's terms, in query order (a repeated word repeated), and the documents
    holding each: on one shard (KeywordStats) or summed over every shard (KeywordSearch)."""

    terms: tuple[str, ...]
    doc_freqs: tuple[int, ...]


@dataclass(frozen=True)
class KeywordStats:
    """A shard's statistics for a batch of text queries: terms and their document
    frequencies per query, the documents it indexes and their tokens."""

    queries: list[KeywordTerms]
    doc_count: int
    total_tokens: int


@dataclass(frozen=True, eq=False)
class KeywordSearch:
    """A keyword search batch as every shard receives it: the queries' terms with the global
    document frequencies, the global document count and token total, and what a vector
    search takes besides (k, filters, payloads)."""

    queries: list[KeywordTerms]
    doc_count: int
    total_tokens: int
    k: int
    where: Filter | None = None
    where_document: DocFilter | None = None
    include_metadata: bool = False
    include_vectors: bool = False
    include_documents: bool = False
    buckets: np.ndarray | None = None  # as ShardSearch.buckets

    @property
    def nq(self) -> int:
        return len(self.queries)
