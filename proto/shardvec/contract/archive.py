"""The snapshot archive format, in one place for the server (create, restore) and the client
(verify without a server).

An archive is an uncompressed tar (stdlib tarfile; nothing is unpickled or executed) of:

    manifest.json              collection spec; per shard: seq, rows, files (size, sha256)
    manifest.json.sha256       sha256 of manifest.json, hex
    shard-0000/store.sqlite    the shard's SQLite store as of its seq (the rows)
    shard-0000/index.bin       the shard's index checkpoint, when one was intact (derived)
    shard-0000/manifest.json   the checkpoint's own manifest
    shard-0001/...

Each shard's files are one replica's state at one sequence number (`seq` in the manifest), so
the archive holds exactly the writes each shard acknowledged up to that seq. Verification
checks the manifest's checksum, every file's size and sha256, that nothing is missing or
extra, and that each store copy is intact and holds the seq and row count the manifest says.
Failures raise DataLoss naming the file; something that is not an archive raises
InvalidArgument. Members are read by name into paths built here, never extracted as named.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from shardvec.contract.errors import DataLoss, InvalidArgument, ShardvecError
from shardvec.contract.settings import CollectionSpec, IndexSettings
from shardvec.contract.store_copy import (
    SNAPSHOT_FILES,
    STORE_FILE,
    inspect_store_copy,
    is_count,
    is_sha256,
)

ARCHIVE_FORMAT = "shardvec-snapshot"
ARCHIVE_VERSION = 1
MANIFEST = "manifest.json"
MANIFEST_SUM = "manifest.json.sha256"
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_MANIFEST_SUM_BYTES = 256  # a hex sha256 and a newline, with room to spare
CHUNK_BYTES = 1 << 20
_PLAIN = (tarfile.REGTYPE, tarfile.AREGTYPE)  # what write_archive writes
_KIND_NAMES = {
    tarfile.SYMTYPE: "symbolic link",
    tarfile.LNKTYPE: "hard link",
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
    tarfile.FIFOTYPE: "FIFO",
    tarfile.CONTTYPE: "contiguous file",
}


def shard_prefix(shard: int) -> str:
    return f"shard-{shard:04d}"


@dataclass(frozen=True)
class ArchiveShard:
    """One shard as the archive holds it; `store_path` is set once its store is extracted."""

    shard: int
    seq: int
    rows: int
    files: list[dict[str, Any]]
    store_path: Path | None = None


@dataclass(frozen=True)
class Archive:
    """A verified archive: the collection it came from and its shards."""

    path: Path
    spec: CollectionSpec
    created_unix: float
    shards: list[ArchiveShard]
    size: int

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)

    def report(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "collection": self.spec.name,
            "dim": self.spec.index.dim,
            "metric": self.spec.index.metric,
            "shards": self.spec.shards,
            "replicas": self.spec.replicas,
            "index": self.spec.index.to_dict(),
            "created_unix": self.created_unix,
            "rows": self.rows,
            "bytes": self.size,
            "shard_seqs": [s.seq for s in self.shards],
            "shard_rows": [s.rows for s in self.shards],
        }


# --------------------------------------------------------------------------------- writing


def write_archive(
    path: Path, spec: CollectionSpec, shards: list[tuple[dict[str, Any], Path]]
) -> dict[str, Any]:
    """Write an archive of `spec` from each shard's (shard manifest, directory of its files),
    in shard order; returns the archive manifest."""
    entries = []
    for shard, (man, directory) in enumerate(shards):
        files = [
            {"path": f"{shard_prefix(shard)}/{f['name']}", "size": f["size"], "sha256": f["sha256"]}
            for f in man["files"]
        ]
        entries.append(
            {
                "shard": shard,
                "seq": man["seq"],
                "rows": man["rows"],
                "tombstones": man["tombstones"],
                "checkpoint_seq": man.get("checkpoint_seq"),
                "replica": man.get("replica", ""),
                "files": files,
                "dir": directory,
            }
        )
    manifest = {
        "format": ARCHIVE_FORMAT,
        "version": ARCHIVE_VERSION,
        "created_unix": time.time(),
        "collection": {
            "name": spec.name,
            "shards": spec.shards,
            "replicas": spec.replicas,
            "index": spec.index.to_dict(),
            **({"embedding": spec.embedding} if spec.embedding else {}),
            **({"ttl_seconds": spec.ttl_seconds} if spec.ttl_seconds else {}),
        },
        "rows": sum(e["rows"] for e in entries),
        "shards": [{k: v for k, v in e.items() if k != "dir"} for e in entries],
    }
    text = json.dumps(manifest, indent=1, sort_keys=True).encode()
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, MANIFEST, text)
        _add_bytes(tar, MANIFEST_SUM, hashlib.sha256(text).hexdigest().encode())
        for e in entries:
            for f in e["files"]:
                src = Path(e["dir"]) / f["path"].rsplit("/", 1)[1]
                info = tarfile.TarInfo(f["path"])
                info.size = f["size"]
                info.mtime = int(manifest["created_unix"])
                info.mode = 0o644
                with open(src, "rb") as fh:
                    tar.addfile(info, fh)
    return manifest


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


# --------------------------------------------------------------------------------- reading


def verify_snapshot(path: str | Path) -> dict[str, Any]:
    """Check an archive without a server: checksums, files, store integrity, seqs and row
    counts. Returns a report; raises DataLoss or InvalidArgument with the reason."""
    with tempfile.TemporaryDirectory(prefix="shardvec-verify-") as tmp:
        return open_archive(Path(path), Path(tmp)).report()


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The archive's manifest (checked against its checksum), without reading the files."""
    path = Path(path)
    with _open_tar(path) as tar:
        members = _members(tar, path)
        return _read_manifest(tar, members, path)


def open_archive(path: Path, workdir: Path) -> Archive:
    """Verify the archive at `path` and extract each shard's store into `workdir`."""
    path = Path(path)
    with _open_tar(path) as tar:
        members = _members(tar, path)
        manifest = _read_manifest(tar, members, path)
        spec, created, shards = _parse_manifest(manifest, path)
        expected = {f["path"] for s in shards for f in s.files} | {MANIFEST, MANIFEST_SUM}
        extra = sorted(set(members) - expected)
        if extra:
            raise DataLoss(f"snapshot {path}: unexpected files in the archive: {extra[:5]}")
        out = []
        for s in shards:
            store_path = None
            for f in s.files:
                dest = None
                if f["path"].endswith("/" + STORE_FILE):
                    dest = Path(workdir) / shard_prefix(s.shard) / STORE_FILE
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    store_path = dest
                _check_member(tar, members, f, path, dest)
            assert store_path is not None
            summary = inspect_store_copy(store_path)
            where = f"snapshot {path}: shard {s.shard}"
            if summary.seq != s.seq:
                raise DataLoss(f"{where}: store is at seq {summary.seq}, manifest says {s.seq}")
            if summary.rows != s.rows:
                raise DataLoss(f"{where}: store holds {summary.rows} rows, manifest says {s.rows}")
            if summary.settings.get("dim") != spec.index.dim:
                raise DataLoss(f"{where}: store dimension differs from the collection's")
            out.append(ArchiveShard(s.shard, s.seq, s.rows, s.files, store_path))
    return Archive(path, spec, created, out, path.stat().st_size)


def _open_tar(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:")
    except FileNotFoundError:
        raise InvalidArgument(f"snapshot {path}: no such file") from None
    except (tarfile.TarError, OSError) as exc:
        raise InvalidArgument(f"snapshot {path}: not a shardvec snapshot archive ({exc})") from None


def _members(tar: tarfile.TarFile, path: Path) -> dict[str, tarfile.TarInfo]:
    """The archive's regular files by name. Directory entries are skipped; anything else
    (links, devices, FIFOs, sparse or contiguous files) is refused, and so is a member whose
    header claims more data than the archive holds: a member is never read past its real
    bytes, so a small crafted archive cannot expand into gigabytes of memory or disk."""
    try:
        members = tar.getmembers()
        real = path.stat().st_size
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataLoss(f"snapshot {path}: the archive is damaged ({exc})") from None
    out: dict[str, tarfile.TarInfo] = {}
    for m in members:
        if m.type == tarfile.DIRTYPE:
            continue
        if m.type not in _PLAIN or m.sparse is not None:
            kind = (
                "sparse file"
                if m.sparse is not None or m.type == tarfile.GNUTYPE_SPARSE
                else (_KIND_NAMES.get(m.type, f"type {m.type!r}"))
            )
            raise DataLoss(
                f"snapshot {path}: unexpected entry {m.name!r} ({kind}, not a plain file)"
            )
        if m.size < 0 or m.offset_data + m.size > real:
            raise DataLoss(
                f"snapshot {path}: {m.name!r} claims {m.size} bytes, more than the archive "
                f"holds after its header ({max(0, real - m.offset_data)}): the archive is "
                "damaged or crafted"
            )
        if m.name in out:
            raise DataLoss(f"snapshot {path}: {m.name!r} appears twice")
        out[m.name] = m
    return out


def _read_manifest(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], path: Path
) -> dict[str, Any]:
    if MANIFEST not in members:
        raise InvalidArgument(f"snapshot {path}: not a shardvec snapshot archive (no {MANIFEST})")
    if MANIFEST_SUM not in members:
        raise DataLoss(f"snapshot {path}: {MANIFEST_SUM} is missing")
    if members[MANIFEST].size > MAX_MANIFEST_BYTES:
        raise DataLoss(f"snapshot {path}: {MANIFEST} is implausibly large")
    if members[MANIFEST_SUM].size > MAX_MANIFEST_SUM_BYTES:
        raise DataLoss(f"snapshot {path}: {MANIFEST_SUM} is implausibly large")
    text = _read_member(tar, members[MANIFEST], path)
    want = _read_member(tar, members[MANIFEST_SUM], path).decode(errors="replace").strip()
    if hashlib.sha256(text).hexdigest() != want:
        raise DataLoss(f"snapshot {path}: {MANIFEST} does not match its checksum")
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise DataLoss(f"snapshot {path}: {MANIFEST} is not JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("format") != ARCHIVE_FORMAT:
        raise InvalidArgument(f"snapshot {path}: not a shardvec snapshot archive")
    if raw.get("version") != ARCHIVE_VERSION:
        raise InvalidArgument(
            f"snapshot {path}: archive version {raw.get('version')!r} is not supported "
            f"(this shardvec reads version {ARCHIVE_VERSION})"
        )
    return raw


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> bytes:
    try:
        f = tar.extractfile(member)
        assert f is not None
        data = f.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataLoss(f"snapshot {path}: cannot read {member.name}: {exc}") from None
    if len(data) != member.size:
        raise DataLoss(f"snapshot {path}: {member.name} is truncated")
    return data


def _parse_manifest(
    raw: dict[str, Any], path: Path
) -> tuple[CollectionSpec, float, list[ArchiveShard]]:
    try:
        col = raw["collection"]
        spec = CollectionSpec(
            col["name"],
            IndexSettings.from_dict(col["index"]),
            col["shards"],
            col["replicas"],
            str(col.get("embedding", "")),
            ttl_seconds=float(col.get("ttl_seconds", 0.0)),
        )
        created = float(raw["created_unix"])
        shards = []
        for i, s in enumerate(raw["shards"]):
            if s["shard"] != i or not (is_count(s["seq"]) and is_count(s["rows"])):
                raise ValueError(f"shard entry {i} is malformed")
            files = s["files"]
            names = [f["path"] for f in files]
            allowed = {f"{shard_prefix(i)}/{n}" for n in SNAPSHOT_FILES}
            if f"{shard_prefix(i)}/{STORE_FILE}" not in names or not set(names) <= allowed:
                raise ValueError(f"shard {i} lists unexpected files {names}")
            for f in files:
                if not is_count(f["size"]) or not is_sha256(f["sha256"]):
                    raise ValueError(f"{f['path']}: bad size or checksum")
            shards.append(ArchiveShard(i, s["seq"], s["rows"], files))
        if len(shards) != spec.shards:
            raise ValueError(f"{len(shards)} shard entries for {spec.shards} shards")
    except ShardvecError as exc:
        raise InvalidArgument(f"snapshot {path}: {MANIFEST}: {exc.message}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidArgument(f"snapshot {path}: {MANIFEST} is malformed: {exc}") from None
    return spec, created, shards


def _check_member(
    tar: tarfile.TarFile,
    members: dict[str, tarfile.TarInfo],
    entry: dict[str, Any],
    path: Path,
    dest: Path | None,
) -> None:
    """Hash one member (copying it to `dest` when given) against its manifest entry."""
    name = entry["path"]
    member = members.get(name)
    if member is None:
        raise DataLoss(f"snapshot {path}: {name} is missing from the archive")
    if member.size != entry["size"]:
        raise DataLoss(
            f"snapshot {path}: {name} has {member.size} bytes, the manifest says {entry['size']}"
        )
    h = hashlib.sha256()
    out: IO[bytes] | None = open(dest, "wb") if dest is not None else None  # noqa: SIM115
    try:
        src = tar.extractfile(member)
        assert src is not None
        got = 0
        while chunk := src.read(CHUNK_BYTES):
            h.update(chunk)
            got += len(chunk)
            if out is not None:
                out.write(chunk)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataLoss(f"snapshot {path}: cannot read {name}: {exc}") from None
    finally:
        if out is not None:
            out.close()
    if got != entry["size"]:
        raise DataLoss(f"snapshot {path}: {name} is truncated")
    if h.hexdigest() != entry["sha256"]:
        raise DataLoss(
            f"snapshot {path}: {name} fails its checksum (sha256 {h.hexdigest()[:16]}..., "
            f"expected {entry['sha256'][:16]}...): the archive is damaged"
        )
