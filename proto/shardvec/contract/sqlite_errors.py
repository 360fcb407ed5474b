"""SQLite and disk failures as shardvec errors, in one place (the shard's store and the
coordinator's registry both use it), so a full disk is never INTERNAL with a raw message.

| SQLite / OS                                   | error              | gRPC status         |
|-----------------------------------------------|--------------------|---------------------|
| SQLITE_FULL, ENOSPC, EDQUOT                   | ResourceExhausted  | RESOURCE_EXHAUSTED  |
| SQLITE_CORRUPT, SQLITE_NOTADB, "malformed"    | DataLoss           | DATA_LOSS           |
| SQLITE_BUSY, SQLITE_LOCKED, SQLITE_PROTOCOL   | Unavailable        | UNAVAILABLE         |
| SQLITE_IOERR, SQLITE_CANTOPEN, other OSError  | Unavailable        | UNAVAILABLE         |
| SQLITE_READONLY, EROFS, EACCES                | FailedPrecondition | FAILED_PRECONDITION |
| SQLITE_TOOBIG                                 | InvalidArgument    | INVALID_ARGUMENT    |
| any other SQLite error                        | Unavailable        | UNAVAILABLE         |

A constraint violation (sqlite3.IntegrityError) is the caller's to handle: it means the
caller's own rule was broken (a duplicate name in the registry, a slot reused in a store).

Unavailable here is the plain class, not ReplicaDown: the process answered, so nobody is
marked dead for it.
"""

from __future__ import annotations

import errno
import sqlite3

from shardvec.contract.errors import (
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    ShardvecError,
    Unavailable,
)

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_READONLY_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM}


def is_disk_full(exc: BaseException) -> bool:
    """True for SQLITE_FULL and ENOSPC/EDQUOT."""
    if isinstance(exc, OSError):
        return exc.errno in _FULL_ERRNOS
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", "") or ""
        return name.startswith("SQLITE_FULL") or "database or disk is full" in str(exc)
    return False


def map_storage_error(exc: BaseException, what: str) -> ShardvecError:
    """The shardvec error for a SQLite or OS failure on `what` (a path or a name)."""
    if isinstance(exc, ShardvecError):
        return exc
    if is_disk_full(exc):
        return ResourceExhausted(f"{what}: the disk is full ({exc}); free space and retry")
    if isinstance(exc, OSError):
        if exc.errno in _READONLY_ERRNOS:
            return FailedPrecondition(f"{what}: not writable: {exc}")
        return Unavailable(f"{what}: I/O error: {exc}")
    name = (getattr(exc, "sqlite_errorname", "") or "") if isinstance(exc, sqlite3.Error) else ""
    text = str(exc)
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in text or (
        "not a database" in text
    ):
        return DataLoss(f"{what} is corrupt: {exc}")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_PROTOCOL")) or "locked" in text:
        return Unavailable(f"{what} is busy ({exc}); retry")
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return FailedPrecondition(f"{what} is read-only: {exc}")
    if name.startswith("SQLITE_TOOBIG") or "too big" in text:
        return InvalidArgument(f"{what}: a value is too large to store: {exc}")
    return Unavailable(f"{what}: storage error ({name or type(exc).__name__}): {exc}")
