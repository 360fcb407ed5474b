"""Scroll cursors: opaque bytes the coordinator hands out and takes back, sealed with an HMAC.

A cursor says where a scroll stands: the collection it walks (its name and the uid it got when
it was created, so a cursor outlives neither a drop nor a re-creation under the same name), the
slice of the order it covers, and the position, the (bucket, id) of the last row read
(exclusive; id "" means from the start of that bucket). Scroll order is (bucket, id): buckets
are the routing's (shardvec.contract.buckets), so the position means the same whichever shard
holds a bucket, and a later resharding that moves buckets leaves every cursor valid.

Layout (version 1, big-endian): version u8, slice u16, slices u16, bucket u16, uid 16 bytes,
name length u8, name, id length u16, id, then the first 16 bytes of HMAC-SHA256 of all that
under the coordinator's secret. The secret is 32 random bytes created once in the data
directory (0600, written whole then renamed), so cursors survive a coordinator restart. A
cursor that fails the HMAC (forged, edited, truncated, or of another cluster) is
INVALID_ARGUMENT, as is one of another collection or slice; one whose collection was dropped
and created again is FAILED_PRECONDITION.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from shardvec.contract.buckets import NUM_BUCKETS
from shardvec.contract.errors import FailedPrecondition, InvalidArgument
from shardvec.contract.private_files import FILE_MODE

VERSION = 1
MAC_BYTES = 16
SECRET_BYTES = 32
_HEAD = struct.Struct(">BHHH16sB")


@dataclass(frozen=True)
class Cursor:
    """Where a scroll stands (see the module docstring)."""

    collection: str
    uid: bytes  # 16 bytes
    slice: int
    slices: int  # 0: the whole collection
    bucket: int
    id: str


def encode_cursor(cursor: Cursor, secret: bytes) -> bytes:
    name = cursor.collection.encode("utf-8")
    rid = cursor.id.encode("utf-8")
    payload = (
        _HEAD.pack(
            VERSION, cursor.slice, cursor.slices, cursor.bucket, cursor.uid, len(name)
        )
        + name
        + struct.pack(">H", len(rid))
        + rid
    )
    return payload + _mac(secret, payload)


def decode_cursor(data: bytes, secret: bytes) -> Cursor:
    """The cursor in `data`; InvalidArgument unless this server sealed it, unaltered."""
    if len(data) < _HEAD.size + 2 + MAC_BYTES:
        raise InvalidArgument(f"cursor: {len(data)} bytes is not a scroll cursor")
    payload, mac = data[:-MAC_BYTES], data[-MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        raise InvalidArgument(
            "cursor: not a cursor this server issued, or it was altered; pass next_cursor of "
            "the previous page unchanged, or an empty cursor to start again"
        )
    version, slice_, slices, bucket, uid, name_len = _HEAD.unpack_from(payload)
    if version != VERSION:
        raise InvalidArgument(f"cursor: version {version} is not supported (this server: "
                              f"{VERSION}); start a new scroll")
    pos = _HEAD.size
    name = payload[pos : pos + name_len]
    pos += name_len
    (id_len,) = struct.unpack_from(">H", payload, pos)
    rid = payload[pos + 2 : pos + 2 + id_len]
    if pos + 2 + id_len != len(payload) or bucket > NUM_BUCKETS:
        raise InvalidArgument("cursor: malformed")
    return Cursor(name.decode("utf-8"), uid, slice_, slices, bucket, rid.decode("utf-8"))


def check_cursor(cursor: Cursor, collection: str, uid: bytes, slice_: int, slices: int) -> None:
    """The cursor must be of this collection (and this incarnation of it) and this slice."""
    if cursor.collection != collection:
        raise InvalidArgument(
            f"cursor: it belongs to a scroll of collection {cursor.collection!r}, not "
            f"{collection!r}"
        )
    if cursor.uid != uid:
        raise FailedPrecondition(
            f"cursor: collection {collection!r} was dropped and created again since this "
            "scroll began; start a new scroll"
        )
    if (cursor.slice, cursor.slices) != (slice_, slices):
        raise InvalidArgument(
            f"cursor: it was issued for slice {cursor.slice} of {cursor.slices}, not "
            f"{slice_} of {slices}"
        )


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, payload, hashlib.sha256).digest()[:MAC_BYTES]


def load_or_create_secret(path: Path) -> bytes:
    """The cursor secret at `path`, created (32 random bytes, 0600, fsync'd, renamed into
    place) when missing or not 32 bytes."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    if len(data) == SECRET_BYTES:
        return data
    secret = os.urandom(SECRET_BYTES)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.write(fd, secret)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return secret
