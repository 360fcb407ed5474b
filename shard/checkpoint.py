"""Durable checkpoints of a replica's index: index.bin, and codes.npz beside it, vouched for
by manifest.json.

Checkpoint: `save_index` to a temporary file, fsync, `os.replace` onto index.bin, fsync the
directory; then the compact copy's codes (shard/compact.py `state`) to codes.npz the same way;
then manifest.json, last. A checkpoint counts only if the manifest parses, its settings match
and index.bin has the recorded size and sha256. The codes count only if codes.npz has theirs
too; without them (a manifest written before codes were kept, a snapshot, which carries the
index alone, or a damaged file) the restart codes every row from the store instead, as it once
always did: at 250k rows x 384 that is about 3 of a replica's 6.5 CPU-seconds to open.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import threading
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shardvec.contract.private_files import FILE_MODE
from shardvec.contract.settings import IndexSettings
from shardvec.contract.store_copy import INDEX_FILE, MANIFEST_FILE
from shardvec.shard.index import HnswIndex

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
CODES_FILE = "codes.npz"  # the compact copy's codes as of the checkpoint (derived, optional)
Arrays = Mapping[str, npt.NDArray[Any]]


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
    codes_size: int | None = None  # codes.npz, when the checkpoint holds it
    codes_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        codes = None
        if self.codes_size is not None:
            codes = {"file": CODES_FILE, "size": self.codes_size, "sha256": self.codes_sha256}
        return {
            "codes": codes,
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
        codes = raw.get("codes")
        if codes is not None:
            if not isinstance(codes, dict) or codes.get("file") != CODES_FILE:
                raise ValueError("manifest has a malformed codes entry")
            size, digest = codes.get("size"), codes.get("sha256")
            if not isinstance(size, int) or size < 0 or not isinstance(digest, str):
                raise ValueError("manifest has a malformed codes entry")
            out = dataclasses.replace(out, codes_size=size, codes_sha256=digest)
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


def _place_vouched(tmp: Path, final: Path) -> tuple[int, str]:
    """Move a written `tmp` durably onto `final`, private; the size and sha256 the manifest
    records for it."""
    os.chmod(tmp, FILE_MODE)  # hnswlib creates its file with the process umask
    vouch = tmp.stat().st_size, sha256_file(tmp)
    _replace_durably(tmp, final)
    return vouch


def _check_vouched(path: Path, size: int, digest: str | None) -> None:
    """ValueError unless `path` has the size and sha256 the manifest records for it."""
    got = path.stat().st_size
    if got != size:
        raise ValueError(f"{path.name} is {got} bytes, the manifest says {size}")
    if sha256_file(path) != digest:
        raise ValueError(f"{path.name} does not match the manifest's checksum")


def write_checkpoint(
    directory: Path, index: HnswIndex, seq: int, n_slots: int, codes: Arrays | None = None
) -> Manifest:
    """Save the index, then the compact copy's `codes` (when given), then the manifest, each
    durably. Caller holds the read side and keeps writers out so the saved index and codes
    are exactly the state at `seq`."""
    directory = Path(directory)
    tag = f"tmp-{os.getpid()}-{threading.get_ident()}"
    tmp = directory / f"{INDEX_FILE}.{tag}"
    ctmp = directory / f"{CODES_FILE}.{tag}"
    mtmp = directory / f"{MANIFEST_FILE}.{tag}"
    try:
        index.save(tmp)
        size, digest = _place_vouched(tmp, directory / INDEX_FILE)
        codes_size: int | None = None
        codes_digest: str | None = None
        if codes is not None:
            with open(ctmp, "wb") as f:
                np.savez(f, allow_pickle=False, **codes)
            codes_size, codes_digest = _place_vouched(ctmp, directory / CODES_FILE)
        manifest = Manifest(
            seq=seq,
            index_size=size,
            index_sha256=digest,
            settings=index.settings.to_dict(),
            max_elements=index.capacity,
            n_slots=n_slots,
            created_unix=time.time(),
            codes_size=codes_size,
            codes_sha256=codes_digest,
        )
        mtmp.write_text(json.dumps(manifest.to_json(), indent=1, sort_keys=True), encoding="utf-8")
        os.chmod(mtmp, FILE_MODE)
        _replace_durably(mtmp, directory / MANIFEST_FILE)
    finally:
        for leftover in (tmp, ctmp, mtmp):
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
        _check_vouched(index_path, manifest.index_size, manifest.index_sha256)
        index = HnswIndex.load(settings, index_path, manifest.max_elements)
        if index.element_count > manifest.n_slots:
            raise ValueError("index holds more labels than the manifest's slots")
        return index, manifest
    except (OSError, ValueError, RuntimeError, MemoryError) as exc:
        log.warning("%s: checkpoint unusable, rebuilding from the store: %s", directory, exc)
        return None


def load_codes(directory: Path, manifest: Manifest) -> dict[str, npt.NDArray[Any]] | None:
    """The codes the checkpoint of `manifest` holds, if codes.npz is the file it vouches for;
    None (with a warning, where it names one) otherwise: the caller codes from the store."""
    if manifest.codes_size is None:
        return None
    path = Path(directory) / CODES_FILE
    try:
        _check_vouched(path, manifest.codes_size, manifest.codes_sha256)
        with np.load(path, allow_pickle=False) as arrays:
            return {name: arrays[name] for name in arrays.files}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        log.warning("%s: checkpoint codes unusable, coding from the store: %s", directory, exc)
        return None
