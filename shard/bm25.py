"""The full-text index of one replica (SQLite FTS5) and its BM25 scoring with given statistics.

The index is an FTS5 table over the store's documents, external content (`content='rows'`,
its rowid the row's slot), kept in step with `rows` by triggers: every statement that writes
`rows` (upsert, tombstone, update, staged commit, catch-up) changes the index in the same
transaction, so it is exactly as durable as the rows and can never disagree with them. The
slot is the key because it is an integer that stays with a live row (an update keeps it) and
that VACUUM cannot renumber; tombstones (slot NULL) and rows without a document are not
indexed. A store without the index, or with one of another tokenizer, gets it built from its
rows when opened (`ensure_fts`, one transaction, recorded in `kv.fts`): idempotent.

Keyword search scores FTS5's own bm25() (sqlite/ext/fts5/fts5_aux.c), term by term:

    idf(t)   = ln((N - n(t) + 0.5) / (n(t) + 0.5)), and 1e-6 where that is <= 0
    score(D) = sum over the query's terms t of
               idf(t) * tf(t, D) * (k1 + 1) / (tf(t, D) + k1 * (1 - b + b * |D| / avgdl))

with k1 = 1.2, b = 0.75, avgdl = total tokens / N, a repeated query term counted each time
(FTS5 sees one phrase per quoted term), higher is better (bm25() returns the negation). N,
n(t) and the token total are given by the caller: the coordinator sums them over every shard
(KeywordStats, the "DFS" phase), so each shard scores as one index over all documents would.
tf comes from the `fts5vocab` instance table, |D| from the FTS5 `docsize` table and the
local N and token total from its averages record (both SQLite varints): exact, read in the
same snapshot. The user's text is never FTS5 query syntax: it is tokenized by FTS5 itself
(inserted as a value into an in-memory table with the same tokenizer, then read back from
its vocabulary), and terms are looked up as values, so quotes, NEAR, column filters, `*`,
`^` and AND/OR/NOT are words or separators like any other.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from shardvec.contract.errors import InvalidArgument
from shardvec.contract.limits import TEXT_TOKENIZERS

K1 = 1.2
B = 0.75
MIN_IDF = 1e-6  # FTS5: "the minimum allowable IDF"

FTS = "docs_fts"
_INDEXED = "{r}.deleted = 0 AND {r}.document IS NOT NULL AND {r}.slot IS NOT NULL"
_TRIGGERS = (
    f"""CREATE TRIGGER rows_fts_insert AFTER INSERT ON rows WHEN {_INDEXED.format(r="new")}
BEGIN INSERT INTO {FTS}(rowid, document) VALUES (new.slot, new.document); END""",
    f"""CREATE TRIGGER rows_fts_delete AFTER DELETE ON rows WHEN {_INDEXED.format(r="old")}
BEGIN INSERT INTO {FTS}({FTS}, rowid, document) VALUES ('delete', old.slot, old.document); END""",
    # One trigger, old entry out before the new one in: the two may share a slot.
    f"""CREATE TRIGGER rows_fts_update AFTER UPDATE OF slot, deleted, document ON rows BEGIN
INSERT INTO {FTS}({FTS}, rowid, document) SELECT 'delete', old.slot, old.document
  WHERE {_INDEXED.format(r="old")};
INSERT INTO {FTS}(rowid, document) SELECT new.slot, new.document WHERE {_INDEXED.format(r="new")};
END""",
)
_TRIGGER_NAMES = ("rows_fts_insert", "rows_fts_delete", "rows_fts_update")
_IN_CHUNK = 900
_RANGE_SCAN = 1000  # candidate documents above which lengths are read as one range


def tokenize_clause(tokenizer: str) -> str:
    """FTS5's `tokenize` option for one of TEXT_TOKENIZERS."""
    if tokenizer not in TEXT_TOKENIZERS:
        raise InvalidArgument(
            f"text_tokenizer: must be one of {', '.join(TEXT_TOKENIZERS)}, got {tokenizer!r}"
        )
    return "porter unicode61" if tokenizer == "porter" else "unicode61"


def ensure_fts(db: sqlite3.Connection, tokenizer: str, stored: str | None) -> bool:
    """Create the index, its vocabulary tables and triggers when `stored` (kv.fts) is not
    `tokenizer`, indexing every live row's document, in one transaction; True when it built.
    The caller records `tokenizer` in kv.fts in the same transaction (`set_kv`)."""
    if stored == tokenizer:
        return False
    clause = tokenize_clause(tokenizer)
    for name in _TRIGGER_NAMES:
        db.execute(f"DROP TRIGGER IF EXISTS {name}")
    for table in (f"{FTS}_inst", f"{FTS}_row", FTS):
        db.execute(f"DROP TABLE IF EXISTS {table}")
    db.execute(
        f"CREATE VIRTUAL TABLE {FTS} USING fts5(document, content='rows', "
        f"content_rowid='slot', tokenize='{clause}')"
    )
    db.execute(f"CREATE VIRTUAL TABLE {FTS}_row USING fts5vocab({FTS}, 'row')")
    db.execute(f"CREATE VIRTUAL TABLE {FTS}_inst USING fts5vocab({FTS}, 'instance')")
    db.execute(
        f"INSERT INTO {FTS}(rowid, document) SELECT slot, document FROM rows "
        f"WHERE {_INDEXED.format(r='rows')}"
    )
    for sql in _TRIGGERS:
        db.execute(sql)
    return True


def varint(blob: bytes, pos: int = 0) -> tuple[int, int]:
    """One SQLite varint (big-endian 7-bit groups, the ninth byte whole) at `pos`: (value,
    next position). FTS5 writes its averages record and docsize rows this way."""
    value = 0
    for i in range(8):
        byte = blob[pos + i]
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, pos + i + 1
    return (value << 8) | blob[pos + 8], pos + 9


@dataclass(frozen=True)
class LocalStats:
    """This replica's part of the corpus statistics of a batch of text queries."""

    terms: list[list[str]]
    doc_freqs: list[list[int]]
    doc_count: int
    total_tokens: int


class QueryTokenizer:
    """Cuts a text into FTS5 terms exactly as the index does: the text goes into an in-memory
    FTS5 table with the same tokenizer (in a transaction rolled back) and its terms are read
    back from the vocabulary in order. Thread-safe (one connection behind a lock)."""

    def __init__(self, tokenizer: str) -> None:
        self._db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        clause = tokenize_clause(tokenizer)
        self._db.execute(f"CREATE VIRTUAL TABLE q USING fts5(x, tokenize='{clause}')")
        self._db.execute("CREATE VIRTUAL TABLE q_inst USING fts5vocab(q, 'instance')")
        self._lock = threading.Lock()

    def terms(self, text: str) -> list[str]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute("INSERT INTO q(rowid, x) VALUES (1, ?)", (text,))
                rows = self._db.execute(
                    "SELECT term FROM q_inst WHERE doc = 1 ORDER BY offset"
                ).fetchall()
            finally:
                self._db.execute("ROLLBACK")
        return [r[0] for r in rows]

    def close(self) -> None:
        self._db.close()


def corpus_totals(db: sqlite3.Connection) -> tuple[int, int]:
    """(documents indexed, tokens over them), from FTS5's averages record (rowid 1 of its
    data table: the row count, then the token count of each column)."""
    row = db.execute(f"SELECT block FROM {FTS}_data WHERE id = 1").fetchone()
    if row is None or not row[0]:
        return 0, 0
    n, pos = varint(row[0])
    total = varint(row[0], pos)[0] if pos < len(row[0]) else 0
    return n, total


def doc_freqs(db: sqlite3.Connection, terms: Sequence[str]) -> dict[str, int]:
    """Documents holding each term, here (the vocabulary's row table)."""
    out = dict.fromkeys(terms, 0)
    for term in out:
        got = db.execute(f"SELECT doc FROM {FTS}_row WHERE term = ?", (term,)).fetchone()
        out[term] = int(got[0]) if got else 0
    return out


def local_stats(
    db: sqlite3.Connection,
    tokenizer: QueryTokenizer,
    texts: Sequence[str],
    slots: npt.NDArray[np.bool_] | None = None,
) -> LocalStats:
    """Terms and local document frequencies of each text, with the local totals; `slots`:
    of the documents of the slots it marks only (None: every document, from FTS5's own
    totals and vocabulary; a mask reads the postings and lengths instead)."""
    terms = [tokenizer.terms(t) for t in texts]
    distinct = sorted({t for ts in terms for t in ts})
    if slots is None:
        n, total = corpus_totals(db)
        freqs = doc_freqs(db, distinct)
    else:
        n, total = _masked_totals(db, slots)
        freqs = {t: _masked_doc_freq(db, t, slots) for t in distinct}
    return LocalStats(terms, [[freqs[t] for t in ts] for ts in terms], n, total)


def _in(slots: npt.NDArray[np.int64], mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    inside = slots < len(mask)
    inside[inside] = mask[slots[inside]]
    return inside


def _masked_totals(db: sqlite3.Connection, mask: npt.NDArray[np.bool_]) -> tuple[int, int]:
    """(documents, tokens) over the indexed slots `mask` marks, from one scan of FTS5's
    docsize rows."""
    rows = db.execute(f"SELECT id, sz FROM {FTS}_docsize").fetchall()
    if not rows:
        return 0, 0
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    keep = _in(ids, mask)
    return int(keep.sum()), int(_sizes([r[1] for r in rows])[keep].sum())


def _masked_doc_freq(db: sqlite3.Connection, term: str, mask: npt.NDArray[np.bool_]) -> int:
    rows = db.execute(
        f"SELECT DISTINCT doc FROM {FTS}_inst WHERE term = ?", (term,)
    ).fetchall()
    docs = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    return int(_in(docs, mask).sum())


def slot_ids(db: sqlite3.Connection, slots: npt.NDArray[np.int64]) -> dict[int, str]:
    """The id each of `slots` holds in the store snapshot `db` (live rows only)."""
    keys = [int(s) for s in slots]
    if not keys:
        return {}
    marks = ",".join("?" * len(keys))
    sql = f"SELECT slot, id FROM rows WHERE deleted = 0 AND slot IN ({marks})"
    return {int(slot): str(rid) for slot, rid in db.execute(sql, keys)}


def idf(doc_count: int, doc_freq: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """FTS5's idf, clamped to MIN_IDF where it would be <= 0 (terms in over half the rows)."""
    n = np.asarray(doc_freq, dtype=np.float64)
    value = np.log((doc_count - n + 0.5) / (n + 0.5))
    return np.where(value <= 0.0, MIN_IDF, value)


def bm25(
    tf: npt.NDArray[np.float64],
    doc_len: npt.NDArray[np.float64],
    idfs: npt.NDArray[np.float64],
    avgdl: float,
) -> npt.NDArray[np.float64]:
    """Scores of documents (rows of `tf`: (docs, query terms)) of lengths `doc_len`."""
    norm = K1 * (1.0 - B + B * doc_len / avgdl)
    part = tf * (K1 + 1.0) / (tf + norm[:, None])
    return np.asarray(part @ idfs, dtype=np.float64)


class PostingCache:
    """Postings (slots, term frequencies) of recently searched terms and every document's
    length, as read at one store generation (Store.generation, even while no write is under
    way): a write moves the generation on and the next search starts afresh. Common terms
    (in a large share of the documents) cost most to read and recur in most queries. Holds
    at most `max_postings` postings; the oldest terms go first. Thread-safe."""

    def __init__(self, max_postings: int = 4_000_000) -> None:
        self.max_postings = max_postings
        self._lock = threading.Lock()
        self._gen = -1
        self._terms: OrderedDict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]
        self._terms = OrderedDict()
        self._size = 0
        self._lengths: npt.NDArray[np.float64] | None = None

    def _at(self, gen: int) -> bool:
        """Move to `gen` when it is newer (dropping what was read before); False for an
        older one (a search that read before the last write: its reads are not kept)."""
        if gen < self._gen:
            return False
        if gen > self._gen:
            self._gen, self._terms, self._size, self._lengths = gen, OrderedDict(), 0, None
        return True

    def postings(
        self, gen: int, term: str
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]] | None:
        with self._lock:
            if not self._at(gen) or term not in self._terms:
                return None
            self._terms.move_to_end(term)
            return self._terms[term]

    def put_postings(
        self, gen: int, term: str, value: tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]
    ) -> None:
        with self._lock:
            if not self._at(gen) or term in self._terms or len(value[0]) > self.max_postings:
                return
            self._terms[term] = value
            self._size += len(value[0])
            while self._size > self.max_postings:
                _, old = self._terms.popitem(last=False)
                self._size -= len(old[0])

    def lengths(self, gen: int) -> npt.NDArray[np.float64] | None:
        with self._lock:
            return self._lengths if self._at(gen) else None

    def put_lengths(self, gen: int, lengths: npt.NDArray[np.float64]) -> None:
        with self._lock:
            if self._at(gen):
                self._lengths = lengths


def match(
    db: sqlite3.Connection,
    terms: Sequence[str],
    global_freqs: Sequence[int],
    doc_count: int,
    total_tokens: int,
    cache: PostingCache | None = None,
    gen: int | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """(slots, scores) of every indexed document holding one of `terms`, scored with the
    given corpus statistics (the sums over every shard). With a cache and the generation
    the snapshot `db` reads (None: unknown), postings and lengths come from the cache when
    it holds them at that generation, and what is read goes into it."""
    if not terms or doc_count <= 0 or total_tokens <= 0:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    use = cache if gen is not None else None
    distinct = list(dict.fromkeys(terms))
    postings: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]] = []
    for term in distinct:
        got = use.postings(gen, term) if use is not None and gen is not None else None
        if got is None:
            rows = db.execute(
                f"SELECT doc, count(*) FROM {FTS}_inst WHERE term = ? GROUP BY doc", (term,)
            ).fetchall()
            arr = np.array(rows, dtype=np.int64).reshape(-1, 2)
            got = (arr[:, 0], arr[:, 1].astype(np.float64))
            if use is not None and gen is not None:
                use.put_postings(gen, term, got)
        postings.append(got)
    slots = np.unique(np.concatenate([p[0] for p in postings]))
    if not len(slots):
        return slots, np.empty(0, np.float64)
    tf = np.zeros((len(slots), len(terms)), dtype=np.float64)
    column = {t: i for i, t in enumerate(distinct)}
    per_term = [np.searchsorted(slots, p[0]) for p in postings]
    for j, term in enumerate(terms):
        i = column[term]
        tf[per_term[i], j] = postings[i][1]
    lengths = _cached_lengths(db, slots, use, gen)
    idfs = idf(doc_count, global_freqs)
    return slots, bm25(tf, lengths, idfs, total_tokens / doc_count)


def _cached_lengths(
    db: sqlite3.Connection,
    slots: npt.NDArray[np.int64],
    cache: PostingCache | None,
    gen: int | None,
) -> npt.NDArray[np.float64]:
    """Lengths of `slots`: from the cache's array of every document's length, built here
    when many are asked, else read by key."""
    if cache is None or gen is None:
        return _doc_lengths(db, slots)
    every = cache.lengths(gen)
    if every is None and len(slots) > _RANGE_SCAN:
        top = db.execute(f"SELECT max(id) FROM {FTS}_docsize").fetchone()[0]
        all_slots = np.arange(int(top or 0) + 1, dtype=np.int64)
        every = _doc_lengths(db, all_slots)
        cache.put_lengths(gen, every)
    if every is None or int(slots[-1]) >= len(every):
        return _doc_lengths(db, slots)
    return every[slots]


def _doc_lengths(db: sqlite3.Connection, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Tokens of each of `slots` (sorted): FTS5's docsize rows, one varint for the one column.
    Many slots are read as one range scan, few by key."""
    if len(slots) > _RANGE_SCAN:
        rows = db.execute(
            f"SELECT id, sz FROM {FTS}_docsize WHERE id BETWEEN ? AND ?",
            (int(slots[0]), int(slots[-1])),
        ).fetchall()
    else:
        rows = []
        keys = [int(s) for s in slots]
        for start in range(0, len(keys), _IN_CHUNK):
            chunk = keys[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows += db.execute(
                f"SELECT id, sz FROM {FTS}_docsize WHERE id IN ({marks})", chunk
            ).fetchall()
    out = np.zeros(len(slots), dtype=np.float64)
    if not rows:
        return out
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    sizes = _sizes([r[1] for r in rows])
    pos = np.searchsorted(slots, ids)
    hit = (pos < len(slots)) & (slots[np.minimum(pos, len(slots) - 1)] == ids)
    out[pos[hit]] = sizes[hit]
    return out


def _sizes(blobs: list[bytes]) -> npt.NDArray[np.float64]:
    """The token counts of docsize blobs (one varint each: the one column)."""
    joined = b"".join(blobs)
    if len(joined) == len(blobs) and max(joined) < 0x80:  # every length < 128: one byte
        return np.frombuffer(joined, dtype=np.uint8).astype(np.float64)
    return np.array([varint(b)[0] for b in blobs], dtype=np.float64)
