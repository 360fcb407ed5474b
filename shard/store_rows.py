"""The rows of the durable store as the rest of the shard sees them (shard/store.py): the
stored, scrolled and staged row types, the one row checksum, and the encodings of vectors
('<f4' bytes) and metadata (compact JSON) on disk."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shardvec.contract.errors import DataLoss, InvalidArgument

_LEN = struct.Struct("<Q")


@dataclass(frozen=True)
class StagedRows:
    """One staged batch as stored: ids and metadata texts as JSON lists, '<f4' vector bytes,
    the ids to tombstone as a JSON list, the upserts' documents as a JSON list (None: no
    documents) and the batch's updates of existing rows as JSON (None: no updates)."""

    seq: int
    ids_json: str
    vectors: bytes | None
    metadata_json: str
    deletes_json: str
    documents_json: str | None = None
    updates_json: str | None = None
    expires_json: str | None = None  # the upserts' expiries as a JSON list (None: none)


@dataclass(frozen=True)
class StoredRow:
    """One row as stored; `vector` is '<f4' bytes, `metadata` JSON text and `document` the
    row's text (each None when absent or not read)."""

    id: str
    slot: int | None
    seq: int
    vector: bytes | None
    metadata: str | None
    deleted: bool
    document: str | None = None
    expires_at: float | None = None  # absolute unix seconds; None: never


@dataclass(frozen=True)
class ScrollRow:
    """One live row as `scroll_rows` reads it; vector/metadata None when not asked for."""

    bucket: int
    id: str
    slot: int | None
    vector: bytes | None
    metadata: str | None
    document: str | None = None
    expires_at: float | None = None


def row_checksum(vector: bytes | None, metadata: str | None, document: str | None = None) -> int:
    """CRC-32 of a row's stored bytes: its vector blob and metadata JSON, each length-prefixed
    (a document, when the row has one, is covered the same way; None leaves the value as it
    was before documents existed). The one place a row's checksum is defined."""
    crc = 0
    parts = [vector or b"", (metadata or "").encode()]
    if document is not None:
        parts.append(document.encode())
    for part in parts:
        crc = zlib.crc32(part, zlib.crc32(_LEN.pack(len(part)), crc))
    return crc


def encode_vectors(vecs: np.ndarray) -> list[bytes]:
    """One '<f4' blob per row, as stored."""
    return [row.tobytes() for row in np.ascontiguousarray(vecs, dtype="<f4")]


def decode_vector(blob: bytes | None) -> np.ndarray:
    """A stored blob as a fresh float32 array."""
    if blob is None:
        raise DataLoss("the store holds a live row without a vector")
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


def decode_vector_rows(
    blobs: Sequence[bytes | None], dim: int, where: str = "the store"
) -> np.ndarray:
    """Stored blobs of `dim` floats each as one (len(blobs), dim) float32 array."""
    data = b"".join(b or b"" for b in blobs)
    if len(data) != 4 * dim * len(blobs):
        raise DataLoss(f"{where} holds vectors of the wrong size")
    return np.frombuffer(data, dtype="<f4").reshape(len(blobs), dim)


def encode_metadata(mds: Sequence[Mapping[str, Any]]) -> list[str | None]:
    """Compact JSON per row; None for an empty object."""
    try:
        return [
            json.dumps(md, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            if md
            else None
            for md in mds
        ]
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"metadatas: not JSON-serialisable: {exc}") from exc


def decode_metadata(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    return json_object(text, "the store holds unreadable metadata")


def json_object(text: str, what: str) -> dict[str, Any]:
    """`text` parsed as a JSON object; DataLoss prefixed with `what` when it is not one."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise DataLoss(f"{what}: {exc}") from exc
    if not isinstance(value, dict):
        raise DataLoss(f"{what}: not a JSON object: {text[:80]!r}")
    return value
