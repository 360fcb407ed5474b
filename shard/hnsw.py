"""The hnswlib index of one replica: growth, a readers-writer lock, and checkpoints.

Labels are the engine's dense integer slots. A freed slot is reused by calling `add_items` on
its (deleted) label: hnswlib 0.8.0 then unmarks it and updates the point in place. The index
is created with `allow_replace_deleted=False`; `replace_deleted=True` corrupts label lookup
when labels are reused.

Thread safety: hnswlib's `add_items`/`mark_deleted` are not safe alongside `knn_query`, and
`resize_index` is safe with nothing. Callers hold `index.lock`: the read side for `knn`,
`get_vectors`, `labels` and `save`; the write side for `add`, `mark_deleted` and
`ensure_capacity`. The lock is held by the caller (not taken inside) so one critical section
can cover the index and the engine's own slot tables together.

Search breadth: hnswlib searches with `max(ef, k)` and `ef` is index-wide state, so the index
keeps `ef = 1` and a search for k results at breadth ef asks for `max(k, ef)` results and keeps
the best k. That gives the same candidates as `set_ef(ef)` without mutating shared state.

Checkpoint: `save_index` to a temporary file, fsync, `os.replace` onto index.bin, fsync the
directory; then manifest.json the same way, last. A checkpoint counts only if the manifest
parses, its settings match and index.bin has the recorded size and sha256.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np
import numpy.typing as npt
from shardvec.contract.settings import IndexSettings
from shardvec.contract.store_copy import INDEX_FILE, MANIFEST_FILE

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
GROWTH_MIN = 1024
SPACES = {"cosine": "cosine", "dot": "ip", "euclidean": "l2"}

Labels = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float32]


class RWLock:
    """A readers-writer lock with writer preference (waiting writers block new readers).

    Not reentrant: a thread must not take the read side twice while a writer may be waiting.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer: int | None = None
        self._writers_waiting = 0

    def acquire_read(self) -> None:
        with self._cond:
            while self._writer is not None or self._writers_waiting:
                self._cond.wait()
            self._readers += 1

    def release_read(self) -> None:
        with self._cond:
            self._readers -= 1
            if self._readers == 0:
                self._cond.notify_all()

    def acquire_write(self) -> None:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer is not None or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = threading.get_ident()

    def release_write(self) -> None:
        with self._cond:
            self._writer = None
            self._cond.notify_all()

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        self.acquire_read()
        try:
            yield
        finally:
            self.release_read()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        self.acquire_write()
        try:
            yield
        finally:
            self.release_write()

    def write_held(self) -> bool:
        """True when the calling thread holds the write side."""
        return self._writer == threading.get_ident()

    def read_held(self) -> bool:
        """True when some thread holds the read side or this thread holds the write side."""
        return self._readers > 0 or self.write_held()


class HnswIndex:
    """An hnswlib index over integer slots, growing in chunks; see the module docstring."""

    def __init__(self, settings: IndexSettings, raw: hnswlib.Index | None = None) -> None:
        self.settings = settings
        self.lock = RWLock()
        if raw is None:
            raw = hnswlib.Index(space=SPACES[settings.metric], dim=settings.dim)
            raw.init_index(
                max_elements=GROWTH_MIN,
                ef_construction=settings.ef_construction,
                M=settings.m,
                allow_replace_deleted=False,
            )
        raw.set_ef(1)
        self._raw = raw

    @property
    def capacity(self) -> int:
        return int(self._raw.max_elements)

    @property
    def element_count(self) -> int:
        """Labels held, deleted ones included."""
        return int(self._raw.element_count)

    def nbytes(self) -> int:
        """Size of the index when serialised, about what it holds in memory."""
        return int(self._raw.index_file_size())

    def ensure_capacity(self, needed: int) -> None:
        """Grow so that `needed` labels fit: by max(1024, 50%) steps. Write side."""
        assert self.lock.write_held()
        cap = self.capacity
        if needed <= cap:
            return
        new = max(needed, cap + max(GROWTH_MIN, cap // 2))
        log.debug("resizing index from %d to %d elements", cap, new)
        self._raw.resize_index(new)

    def add(self, vectors: Floats, slots: Labels, num_threads: int = 1) -> None:
        """Insert or overwrite points at `slots` (a deleted label is revived). Write side."""
        assert self.lock.write_held()
        if len(slots):
            self.ensure_capacity(int(slots.max()) + 1)
            self._raw.add_items(vectors, slots, num_threads=num_threads)

    def mark_deleted(self, slots: Labels) -> int:
        """Hide `slots` from search; labels already deleted or never added are ignored.
        Returns how many labels this call hid. Write side."""
        assert self.lock.write_held()
        hidden = 0
        for slot in slots.tolist():
            try:
                self._raw.mark_deleted(slot)
            except RuntimeError:  # already deleted, or never added
                continue
            hidden += 1
        return hidden

    def labels(self) -> Labels:
        """Every label the index holds, deleted ones included. Read side."""
        assert self.lock.read_held()
        return np.asarray(self._raw.get_ids_list(), dtype=np.int64)

    def get_vectors(self, slots: Labels) -> Floats:
        """Stored vectors of live `slots` (normalised for cosine), float32 (n, dim). Read side."""
        assert self.lock.read_held()
        if not len(slots):
            return np.zeros((0, self.settings.dim), dtype=np.float32)
        out = self._raw.get_items(slots, return_type="numpy")
        return np.asarray(out, dtype=np.float32)

    def knn(
        self,
        queries: Floats,
        k: int,
        ef: int,
        num_threads: int = 1,
        filter: Callable[[int], bool] | None = None,
    ) -> tuple[Labels, Floats]:
        """Labels and hnswlib distances of the best max(k, ef) points per query, best first,
        from a search at breadth max(k, ef) (the extra candidates cost nothing). Read side.

        Raises RuntimeError when hnswlib finds fewer than max(k, ef) points for some query;
        callers cap `k` and `ef` at the number of eligible points and fall back to exact.
        """
        assert self.lock.read_held()
        labels, dist = self._raw.knn_query(
            queries, k=max(k, ef), num_threads=num_threads, filter=filter
        )
        return labels.astype(np.int64), np.asarray(dist, dtype=np.float32)

    def save(self, path: Path) -> None:
        """hnswlib `save_index` to `path`. Read side (searches may continue)."""
        assert self.lock.read_held()
        self._raw.save_index(str(path))


@dataclass
class SlotPlan:
    """Slot changes of one batch, computed before anything is written."""

    up_slots: list[int]
    del_slots: list[int]
    free: list[int]
    n_slots: int


class SlotTable:
    """Ids to dense integer slots (the hnswlib labels) and back, with a free list.

    `id_to_slot` holds live ids; `slot_to_id` ("" when free) and `alive` are arrays over slots
    [0, n_slots) (with spare capacity). Changes are planned first (`plan`, no mutation), then
    applied (`apply`) once the batch is durable. The engine guards it with the index lock.
    """

    def __init__(self) -> None:
        self.id_to_slot: dict[str, int] = {}
        self.slot_to_id: npt.NDArray[np.object_] = np.full(0, "", dtype=object)
        self._alive: npt.NDArray[np.bool_] = np.zeros(0, dtype=np.bool_)
        self.free: list[int] = []
        self.n_slots = 0

    def __len__(self) -> int:
        return len(self.id_to_slot)

    @property
    def alive(self) -> npt.NDArray[np.bool_]:
        """Bool over slots [0, n_slots): True where a live row sits (a view)."""
        return self._alive[: self.n_slots]

    def reserve(self, n: int) -> None:
        """Grow the arrays geometrically so slots below `n` exist; n_slots rises to n."""
        cap = len(self._alive)
        if n > cap:
            new = max(n, 2 * cap, 1024)
            ids = np.full(new, "", dtype=object)
            ids[:cap] = self.slot_to_id
            alive = np.zeros(new, dtype=np.bool_)
            alive[:cap] = self._alive
            self.slot_to_id, self._alive = ids, alive
        self.n_slots = max(self.n_slots, n)

    def load(self, ids: list[str], slots: Labels) -> None:
        """Recovery: mark `ids` live at `slots`; call `rebuild_free` when done."""
        if len(slots):
            self.reserve(int(slots.max()) + 1)
        self.slot_to_id[slots] = np.array(ids, dtype=object)
        self._alive[slots] = True
        self.id_to_slot.update(zip(ids, slots.tolist(), strict=True))

    def rebuild_free(self) -> None:
        self.free = np.flatnonzero(~self.alive)[::-1].tolist()

    def plan(self, up_ids: Sequence[str], del_ids: Sequence[str]) -> SlotPlan:
        """Deletions free their slots first, kept ids keep theirs, new ids take free slots
        (most recently freed first) and then fresh ones past n_slots."""
        del_slots = [self.id_to_slot[i] for i in del_ids if i in self.id_to_slot]
        free = self.free + del_slots[::-1]
        n_slots = self.n_slots
        up_slots: list[int] = []
        for rid in up_ids:
            slot = self.id_to_slot.get(rid)
            if slot is None:
                if free:
                    slot = free.pop()
                else:
                    slot, n_slots = n_slots, n_slots + 1
            up_slots.append(slot)
        return SlotPlan(up_slots, del_slots, free, n_slots)

    def apply(self, plan: SlotPlan, up_ids: Sequence[str]) -> None:
        if plan.del_slots:
            dels = np.asarray(plan.del_slots, dtype=np.int64)
            for rid in self.slot_to_id[dels].tolist():
                del self.id_to_slot[rid]
            self.slot_to_id[dels] = ""
            self._alive[dels] = False
        self.reserve(plan.n_slots)
        if up_ids:
            ups = np.asarray(plan.up_slots, dtype=np.int64)
            self.slot_to_id[ups] = np.array(up_ids, dtype=object)
            self._alive[ups] = True
            self.id_to_slot.update(zip(up_ids, plan.up_slots, strict=True))
        self.free = plan.free


@dataclass(frozen=True)
class Manifest:
    """What a checkpoint holds; written after index.bin, so it vouches for it."""

    seq: int
    index_size: int
    index_sha256: str
    settings: dict[str, Any]
    max_elements: int
    n_slots: int
    created_unix: float

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": MANIFEST_VERSION,
            "seq": self.seq,
            "index_file": INDEX_FILE,
            "index_size": self.index_size,
            "index_sha256": self.index_sha256,
            "settings": self.settings,
            "slots": {"max_elements": self.max_elements, "n_slots": self.n_slots},
            "created_unix": self.created_unix,
        }

    @classmethod
    def from_json(cls, raw: Any) -> Manifest:
        """Parse and type-check; raises ValueError on anything unexpected."""
        if not isinstance(raw, dict) or raw.get("format_version") != MANIFEST_VERSION:
            raise ValueError("unknown manifest format")
        slots = raw["slots"]
        out = cls(
            seq=raw["seq"],
            index_size=raw["index_size"],
            index_sha256=raw["index_sha256"],
            settings=raw["settings"],
            max_elements=slots["max_elements"],
            n_slots=slots["n_slots"],
            created_unix=raw["created_unix"],
        )
        ints = (out.seq, out.index_size, out.max_elements, out.n_slots)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints):
            raise ValueError("manifest counters must be non-negative integers")
        if not isinstance(out.index_sha256, str) or not isinstance(out.settings, dict):
            raise ValueError("manifest has a malformed checksum or settings")
        if not isinstance(out.created_unix, (int, float)):
            raise ValueError("manifest has a malformed timestamp")
        return out


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _replace_durably(tmp: Path, final: Path) -> None:
    _fsync_file(tmp)
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def write_checkpoint(directory: Path, index: HnswIndex, seq: int, n_slots: int) -> Manifest:
    """Save the index and then its manifest, each durably. Caller holds the read side and
    keeps writers out so the saved index is exactly the state at `seq`."""
    directory = Path(directory)
    tmp = directory / f"{INDEX_FILE}.tmp-{os.getpid()}-{threading.get_ident()}"
    mtmp = directory / f"{MANIFEST_FILE}.tmp-{os.getpid()}-{threading.get_ident()}"
    try:
        index.save(tmp)
        size = tmp.stat().st_size
        digest = sha256_file(tmp)
        _replace_durably(tmp, directory / INDEX_FILE)
        manifest = Manifest(
            seq=seq,
            index_size=size,
            index_sha256=digest,
            settings=index.settings.to_dict(),
            max_elements=index.capacity,
            n_slots=n_slots,
            created_unix=time.time(),
        )
        mtmp.write_text(json.dumps(manifest.to_json(), indent=1, sort_keys=True), encoding="utf-8")
        _replace_durably(mtmp, directory / MANIFEST_FILE)
    finally:
        for leftover in (tmp, mtmp):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return manifest


def remove_manifest(directory: Path) -> None:
    """Invalidate the checkpoint (the next open rebuilds from the store)."""
    path = Path(directory) / MANIFEST_FILE
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        _fsync_dir(Path(directory))


def read_manifest(directory: Path) -> Manifest | None:
    """The manifest if present and well-formed; raises ValueError when it is corrupt."""
    path = Path(directory) / MANIFEST_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise ValueError(f"manifest is not text: {exc}") from exc
    try:
        return Manifest.from_json(json.loads(text))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"manifest is missing or mistyping {exc}") from exc


def load_checkpoint(directory: Path, settings: IndexSettings) -> tuple[HnswIndex, Manifest] | None:
    """Load index.bin if manifest.json vouches for it; None (with a warning) otherwise."""
    directory = Path(directory)
    index_path = directory / INDEX_FILE
    try:
        manifest = read_manifest(directory)
        if manifest is None:
            if index_path.exists():
                log.warning("%s: index without manifest (interrupted checkpoint?)", directory)
            return None
        if manifest.settings != settings.to_dict():
            raw_settings = {k: v for k, v in manifest.settings.items() if k != "ef"}
            want = {k: v for k, v in settings.to_dict().items() if k != "ef"}
            if raw_settings != want:
                raise ValueError(f"settings {manifest.settings} differ from {settings.to_dict()}")
        size = index_path.stat().st_size
        if size != manifest.index_size:
            raise ValueError(f"index size {size} != manifest size {manifest.index_size}")
        digest = sha256_file(index_path)
        if digest != manifest.index_sha256:
            raise ValueError("index checksum does not match the manifest")
        raw = hnswlib.Index(space=SPACES[settings.metric], dim=settings.dim)
        raw.load_index(str(index_path), max_elements=max(manifest.max_elements, GROWTH_MIN))
        if int(raw.element_count) > manifest.n_slots:
            raise ValueError("index holds more labels than the manifest's slots")
        return HnswIndex(settings, raw), manifest
    except (OSError, ValueError, RuntimeError, MemoryError) as exc:
        log.warning("%s: checkpoint unusable, rebuilding from the store: %s", directory, exc)
        return None


def exact_topk(
    fetch: Callable[[Labels], Floats],
    metric: str,
    queries: Floats,
    slots: Labels,
    k: int,
    chunk_rows: int = 16_384,
) -> tuple[Labels, Floats]:
    """Exact best `k` of `slots` per query, as (labels, user scores), padded with -1 / NaN.

    `fetch(chunk)` returns the vectors at a chunk of slots; chunks of `chunk_rows` keep memory
    bounded, and no copy of the data outlives the call. Cosine normalises queries and vectors.
    Scores: cosine similarity, dot product, or euclidean distance; best first, ties by lower
    slot.
    """
    nq = len(queries)
    labels = np.full((nq, k), -1, dtype=np.int64)
    scores = np.full((nq, k), np.nan, dtype=np.float32)
    if not len(slots) or not nq:
        return labels, scores
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    best_key = np.zeros((nq, 0), dtype=np.float32)  # lower is better
    best_slot = np.zeros((nq, 0), dtype=np.int64)
    for start in range(0, len(slots), chunk_rows):
        chunk = slots[start : start + chunk_rows]
        vecs = fetch(chunk)
        if metric == "cosine":
            vecs = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        prod = q @ vecs.T
        if metric == "euclidean":
            key = np.einsum("ij,ij->i", vecs, vecs)[None, :] - 2.0 * prod
        else:
            key = -prod
        kc = min(k, len(chunk))
        part = np.argpartition(key, kc - 1, axis=1)[:, :kc] if kc < len(chunk) else None
        if part is None:
            part = np.broadcast_to(np.arange(len(chunk)), (nq, len(chunk)))
        if metric == "euclidean":
            cand = _sq_dist(q, vecs, part)
        else:
            cand = np.take_along_axis(key, part, axis=1)
        best_key = np.concatenate([best_key, cand.astype(np.float32)], axis=1)
        best_slot = np.concatenate([best_slot, chunk[part]], axis=1)
        if best_key.shape[1] > k:
            keep = np.argpartition(best_key, k - 1, axis=1)[:, :k]
            best_key = np.take_along_axis(best_key, keep, axis=1)
            best_slot = np.take_along_axis(best_slot, keep, axis=1)
    order = np.lexsort((best_slot, best_key), axis=1)
    best_key = np.take_along_axis(best_key, order, axis=1)
    best_slot = np.take_along_axis(best_slot, order, axis=1)
    width = best_key.shape[1]
    labels[:, :width] = best_slot
    if metric == "euclidean":
        scores[:, :width] = np.sqrt(np.maximum(best_key, 0.0))
    else:
        scores[:, :width] = -best_key
    return labels, scores


def _sq_dist(q: Floats, vecs: Floats, part: npt.NDArray[np.intp]) -> Floats:
    """Squared distances of each query to its candidate rows, computed from differences
    (not the expanded form) so near-zero distances stay exact; blocked to bound memory."""
    nq, kc = part.shape
    out = np.empty((nq, kc), dtype=np.float32)
    step = max(1, (1 << 22) // max(1, kc * q.shape[1]))
    for s in range(0, nq, step):
        diff = vecs[part[s : s + step]] - q[s : s + step, None, :]
        out[s : s + step] = np.einsum("ijk,ijk->ij", diff, diff)
    return out


def to_scores(metric: str, dist: Floats) -> Floats:
    """hnswlib distances to user scores: 1 - d for cosine and dot, sqrt(d) for euclidean."""
    if metric == "euclidean":
        return np.sqrt(np.maximum(dist, 0.0)).astype(np.float32)
    return (1.0 - dist).astype(np.float32)
