"""Files and directories only their owner may read: every store, index, manifest, registry
and snapshot work file holds collection rows or their derivatives.

Two layers. The coordinator and each shard replica set the process umask to 077 when they
start (`restrict_umask`), which covers every file those processes create, including the
ones other code writes for us (hnswlib's index, SQLite's -wal and -shm, temporary files,
snapshot copies). The files whose mode matters most are also made private explicitly
(`private_file`, `private_dir`), so they stay 0600/0700 whatever the umask of the process
that opens them: SQLite gives -wal and -shm its database file's mode, so a database created
0600 keeps its journal files 0600 as well.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700
PRIVATE_UMASK = 0o077


def restrict_umask() -> int:
    """Make every file this process creates from now on private; returns the old umask."""
    return os.umask(PRIVATE_UMASK)


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) as 0700 directories; an existing `path` is made
    0700 too. Parents that already exist are left as they are."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        d.mkdir(mode=DIR_MODE, exist_ok=True)
    os.chmod(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty as 0600 if it is missing, and make it 0600 if it exists."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path
