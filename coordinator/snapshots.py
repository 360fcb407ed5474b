"""Collection snapshots on the coordinator.

Create: every shard streams a point-in-time copy of one LIVE replica (the read rule: one
healthy replica, the next one on failure), all shards at once while writes carry on; the
copies are checked against their shard manifests and packed into one archive
(shardvec.contract.archive) that is streamed to the caller. Each shard's part holds
exactly the writes that shard applied up to the seq recorded for it, so every write
acknowledged before the snapshot started is in it.

Restore: the streamed archive is verified, a new collection is created (any shard count) and
the live rows of every shard's store copy are upserted through the normal write path, so they
are routed by id for the new layout. The new collection is registered 'restoring' before any
row is copied and is not served (FAILED_PRECONDITION, left out of ListCollections) until every
row is in and 'ready' is committed. A restore that fails part way drops what it created; one
cut short by a crash is dropped at the coordinator's next start (CoordinatorRuntime.restore),
which also removes the work directories left under snapshot_dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from shardvec.contract.archive import Archive, open_archive, shard_prefix, write_archive
from shardvec.contract.errors import DataLoss, FailedPrecondition, InvalidArgument
from shardvec.contract.settings import CollectionSpec
from shardvec.contract.shard_api import ShardLike
from shardvec.contract.store_copy import iter_live_rows, parse_shard_manifest
from shardvec.contract.types import SnapshotChunk
from shardvec.coordinator.collection import CollectionRuntime
from shardvec.coordinator.paths import snapshot_dir
from shardvec.coordinator.replicas.replica_set import ReplicaSet
from shardvec.coordinator.runtime import CoordinatorRuntime

log = logging.getLogger(__name__)

SNAPSHOT_DEADLINE_S = 3600.0  # when the caller sets no deadline
RESTORE_BATCH_ROWS = 1000
CHUNK_BYTES = 1 << 20


def _workdir(runtime: CoordinatorRuntime, kind: str) -> Path:
    root = snapshot_dir(runtime.data_dir)
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=root))


async def create_archive(
    runtime: CoordinatorRuntime, name: str, deadline: float
) -> AsyncIterator[bytes]:
    """Snapshot collection `name` and yield the archive's bytes in chunks."""
    col = runtime.get(name)
    if col.change is not None:
        raise FailedPrecondition(
            f"collection {name!r}: a layout change is in progress; snapshot it once it is done"
        )
    col.snapshots += 1  # a layout change waits for none (CoordinatorRuntime.scale refuses)
    work = _workdir(runtime, "create")
    try:
        async with col.views.read() as view:  # whole stores: a view with no foreign rows
            if view.foreign:
                raise FailedPrecondition(
                    f"collection {name!r}: a layout change is finishing; snapshot it once it "
                    "is done"
                )
            sets = list(view.sets)
            dirs = [work / shard_prefix(rs.shard) for rs in sets]
            manifests = await asyncio.gather(
                *(_pull_shard(rs, d, deadline) for rs, d in zip(sets, dirs, strict=True))
            )
        path = work / "snapshot.tar"
        manifest = await asyncio.to_thread(
            write_archive, path, col.spec, list(zip(manifests, dirs, strict=True))
        )
        log.info(
            "snapshot created",
            extra={
                "collection": name,
                "shard_seqs": [s["seq"] for s in manifest["shards"]],
                "rows": manifest["rows"],
                "bytes": path.stat().st_size,
            },
        )
        with open(path, "rb") as f:
            while data := await asyncio.to_thread(f.read, CHUNK_BYTES):
                yield data
    finally:
        col.snapshots -= 1
        shutil.rmtree(work, ignore_errors=True)


async def _pull_shard(rs: ReplicaSet, dest: Path, deadline: float) -> dict[str, Any]:
    """One LIVE replica's snapshot of shard `rs` into `dest`; returns its manifest."""

    async def call(remote: ShardLike, timeout: float) -> dict[str, Any]:
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        receiver = _ShardReceiver(dest, remote.name)
        try:
            async for chunk in remote.snapshot(timeout):
                receiver.feed(chunk)
        finally:
            receiver.close()
        return receiver.finish()

    return await rs.read(call, deadline)


class _ShardReceiver:
    """Writes a shard's snapshot stream to files, checking sizes and sha256 as it goes."""

    def __init__(self, dest: Path, name: str) -> None:
        self.dest = dest
        self.name = name
        self.manifest: dict[str, Any] | None = None
        self._files: list[dict[str, Any]] = []
        self._next = 0
        self._out: IO[bytes] | None = None
        self._left = 0
        self._hash = hashlib.sha256()

    def feed(self, chunk: SnapshotChunk) -> None:
        if self.manifest is None:
            if not chunk.manifest_json:
                raise DataLoss(f"{self.name}: the snapshot stream has no manifest")
            self.manifest = parse_shard_manifest(chunk.manifest_json)
            self._files = list(self.manifest["files"])
            self._open_next()
        data = memoryview(chunk.data)
        while len(data):
            if self._out is None:
                raise DataLoss(f"{self.name}: the snapshot stream has more bytes than it listed")
            n = min(len(data), self._left)
            self._out.write(data[:n])
            self._hash.update(data[:n])
            self._left -= n
            data = data[n:]
            if self._left == 0:
                self._finish_file()
                self._open_next()

    def _open_next(self) -> None:
        while self._next < len(self._files):
            f = self._files[self._next]
            self._out = open(self.dest / f["name"], "wb")  # noqa: SIM115
            self._left = int(f["size"])
            self._hash = hashlib.sha256()
            if self._left:
                return
            self._finish_file()
        self._out = None

    def _finish_file(self) -> None:
        f = self._files[self._next]
        assert self._out is not None
        self._out.close()
        self._out = None
        self._next += 1
        if self._hash.hexdigest() != f["sha256"]:
            raise DataLoss(f"{self.name}: {f['name']} arrived damaged (sha256 mismatch)")

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def finish(self) -> dict[str, Any]:
        if self.manifest is None:
            raise DataLoss(f"{self.name}: the snapshot stream was empty")
        if self._next < len(self._files):
            raise DataLoss(f"{self.name}: the snapshot stream ended early")
        return {**self.manifest, "replica": self.name}


async def restore_archive(
    runtime: CoordinatorRuntime,
    chunks: AsyncIterator[Any],
    deadline: float,
    batch_rows: int = RESTORE_BATCH_ROWS,
) -> CollectionRuntime:
    """Receive an archive, verify it, and restore it as a new collection; the first chunk's
    restore_as / shards / replicas override the snapshot's own name and layout."""
    work = _workdir(runtime, "restore")
    try:
        path = work / "snapshot.tar"
        first: Any = None
        with open(path, "wb") as f:
            async for chunk in chunks:
                if first is None:
                    first = chunk
                if chunk.data:
                    await asyncio.to_thread(f.write, chunk.data)
        if first is None or path.stat().st_size == 0:
            raise InvalidArgument("restore: the stream carried no snapshot archive")
        archive = await asyncio.to_thread(open_archive, path, work / "stores")
        spec = CollectionSpec(
            first.restore_as or archive.spec.name,
            archive.spec.index,
            int(first.shards) or archive.spec.shards,
            int(first.replicas) or archive.spec.replicas,
            archive.spec.embedding,
            archive.spec.target_recall,
            archive.spec.ttl_seconds,
        )
        col = await runtime.create(spec, restoring=True)
        try:
            rows = await _load_rows(col, archive, deadline, batch_rows)
            runtime.mark_ready(spec.name)
        except BaseException as exc:
            log.warning(
                "snapshot restore failed; dropping the partial collection",
                extra={"collection": spec.name, "reason": repr(exc)},
            )
            with contextlib.suppress(Exception):
                await runtime.drop(spec.name, restoring=True)
            raise
        log.info(
            "snapshot restored",
            extra={
                "collection": spec.name,
                "from_collection": archive.spec.name,
                "shard_seqs": [s.seq for s in archive.shards],
                "shards": spec.shards,
                "rows": rows,
            },
        )
        return col
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _load_rows(
    col: CollectionRuntime, archive: Archive, deadline: float, batch_rows: int
) -> int:
    """Upsert every live row of the archive's store copies into `col`, batch by batch, each
    with its absolute expiry (a row expired by now is left out: no read could see it)."""
    dim = col.dim
    done = 0
    for shard in archive.shards:
        assert shard.store_path is not None
        rows = iter_live_rows(shard.store_path, batch_rows)
        try:
            while (batch := await asyncio.to_thread(next, rows, None)) is not None:
                now = time.time()
                batch = [r for r in batch if r[4] is None or r[4] > now]
                if not batch:
                    continue
                blob = b"".join(r[1] for r in batch)
                if len(blob) != 4 * dim * len(batch):
                    raise DataLoss(f"snapshot shard {shard.shard}: vectors of the wrong size")
                vectors = np.frombuffer(blob, dtype="<f4").reshape(len(batch), dim)
                metadata = [r[2] or "" for r in batch]
                docs = [r[3] or "" for r in batch]
                if not any(docs):
                    docs = []
                expires = [float(r[4] or 0.0) for r in batch]
                await col.upsert(
                    [r[0] for r in batch], vectors, metadata, deadline, docs,
                    expires_at=expires if any(expires) else (),
                )  # fmt: skip
                done += len(batch)
        finally:
            rows.close()
    return done
