"""Durable checkpoints of a replica's index: index.bin vouched for by manifest.json.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shardvec.contract.private_files import FILE_MODE
from shardvec.contract.settings import IndexSettings
from shardvec.contract.store_copy import INDEX_FILE, MANIFEST_FILE
from shardvec.shard.index import HnswIndex

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1


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
        os.chmod(tmp, FILE_MODE)  # hnswlib creates it with the process umask
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
        os.chmod(mtmp, FILE_MODE)
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
            # ef is a search-time default; the tokenizer shapes the FTS index, not the graph;
            # where payloads are held does not shape it either.
            loose = ("ef", "text_tokenizer", "payload_on_disk")
            raw_settings = {k: v for k, v in manifest.settings.items() if k not in loose}
            want = {k: v for k, v in settings.to_dict().items() if k not in loose}
            if raw_settings != want:
                raise ValueError(f"settings {manifest.settings} differ from {settings.to_dict()}")
        size = index_path.stat().st_size
        if size != manifest.index_size:
            raise ValueError(f"index size {size} != manifest size {manifest.index_size}")
        digest = sha256_file(index_path)
        if digest != manifest.index_sha256:
            raise ValueError("index checksum does not match the manifest")
        index = HnswIndex.load(settings, index_path, manifest.max_elements)
        if index.element_count > manifest.n_slots:
            raise ValueError("index holds more labels than the manifest's slots")
        return index, manifest
    except (OSError, ValueError, RuntimeError, MemoryError) as exc:
        log.warning("%s: checkpoint unusable, rebuilding from the store: %s", directory, exc)
        return None
