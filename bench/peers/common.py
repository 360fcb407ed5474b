"""What every peer shares: the pass limits, recall@k, exact top-k in NumPy, the metadata
file, the `Peer` interface each peer implements."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 1000
MAX_PASS_S = 60.0
EFS = [16, 32, 48, 64, 100, 150, 200]
SingleSearch = Callable[[np.ndarray], list[int]]  # one query -> ids, on one client's connection


def recall(found: list[list[int]], gt: np.ndarray, k: int) -> float:
    hits = sum(len(set(f[:k]) & set(gt[j, :k].tolist())) for j, f in enumerate(found))
    return hits / (len(found) * k)


def installed_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def exact_topk(base: np.ndarray, queries: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k row ids among `rows` by inner product (cosine on normalised rows)."""
    out = np.empty((len(queries), k), dtype=np.int64)
    sub = base[rows]
    for s in range(0, len(queries), 128):
        scores = queries[s : s + 128] @ sub.T
        out[s : s + 128] = rows[np.argsort(-scores, axis=1, kind="stable")[:, :k]]
    return out


def load_meta(path: Path, n: int) -> list[dict[str, Any]]:
    """The first n lines of a JSONL metadata file (line i describes base row i)."""
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if len(rows) == n:
                break
            rows.append(json.loads(line))
    if len(rows) < n:
        raise ValueError(f"{path} has {len(rows)} rows, the base {n}")
    return rows


def redact(dsn: str) -> str:
    """A DSN without its password (URL or key=value form)."""
    dsn = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", dsn)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", dsn)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Peer:
    name = ""
    dist = ""
    batch = BATCH  # queries per search request
    batch_label = ""  # how a batch is sent, when not as one request of `batch` queries
    networked = False  # a server: also measured with --clients concurrent clients

    def __init__(self, workdir: Path, dim: int, k: int, args: Any = None) -> None:
        self.workdir, self.dim, self.k, self.args = workdir, dim, k, args

    def build(self, base: np.ndarray) -> None:
        raise NotImplementedError

    def search(self, queries: np.ndarray, ef: int | None) -> list[list[int]]:
        raise NotImplementedError

    def efs(self) -> list[int | None]:
        return list(EFS)

    def single_client(self, ef: int | None) -> SingleSearch | None:
        """A new client (its own connection) for one concurrent thread; None: not measured."""
        return None

    def version(self) -> str:
        return installed_version(self.dist)

    def close(self) -> None:
        """Stop what build started (a server, connections, a table)."""
