"""`shardvec export`: a collection (or the rows matching a filter) to JSON Lines and .npy.

Rows come from one scroll, so each live row comes exactly once even while writes arrive. Line
i of the JSON Lines file is {"id": ..., "metadata": {...}} (with "document": "..." for a row
that has one, and "expires_at": unix seconds for a row that expires; no such key: never) and
row i of the .npy file is its vector. The .npy file is written as rows
arrive, behind a fixed 128-byte header that gets the final row count at the end, so an export
never holds the vectors in memory; both files are written under a .part name and renamed into
place when complete; `shardvec import` reads both back, documents included.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from shardvec.cluster.client import Collection

NPY_HEADER_BYTES = 128


def npy_header(rows: int, dim: int) -> bytes:
    """A version 1.0 .npy header for a (rows, dim) little-endian float32 array, padded to
    NPY_HEADER_BYTES whatever the row count, so it can be rewritten in place."""
    text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}"
    room = NPY_HEADER_BYTES - 10 - 1
    if len(text) > room:
        raise ValueError(f"npy header for shape ({rows}, {dim}) does not fit")
    body = (text + " " * (room - len(text)) + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body


def export_collection(
    col: Collection,
    out: Path,
    vectors_out: Path | None = None,
    where: Mapping[str, Any] | None = None,
    *,
    page_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the rows to `out` (and their vectors to `vectors_out`); returns the row count."""
    parts = [out.with_name(out.name + ".part")]
    if vectors_out is not None:
        parts.append(vectors_out.with_name(vectors_out.name + ".part"))
    rows = 0
    try:
        with parts[0].open("w", encoding="utf-8") as text:
            npy: IO[bytes] | None = None
            if vectors_out is not None:
                npy = parts[1].open("wb")
                npy.write(npy_header(0, col.dim))
            try:
                for page in col.scroll_pages(
                    where,
                    page_size=page_size,
                    include_metadata=True,
                    include_vectors=vectors_out is not None,
                    include_documents=True,
                ):
                    for r in page.records:
                        line: dict[str, Any] = {"id": r.id, "metadata": r.metadata or {}}
                        if r.document:
                            line["document"] = r.document
                        if r.expires_at:
                            line["expires_at"] = r.expires_at
                        text.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")))
                        text.write("\n")
                        if npy is not None and r.vector is not None:
                            npy.write(np.ascontiguousarray(r.vector, dtype="<f4").tobytes())
                    rows += len(page.records)
                    if progress is not None:
                        progress(len(page.records))
                if npy is not None:
                    npy.seek(0)
                    npy.write(npy_header(rows, col.dim))
                    npy.flush()
                    os.fsync(npy.fileno())
            finally:
                if npy is not None:
                    npy.close()
            text.flush()
            os.fsync(text.fileno())
        os.replace(parts[0], out)
        if vectors_out is not None:
            os.replace(parts[1], vectors_out)
    except BaseException:
        for p in parts:
            p.unlink(missing_ok=True)
        raise
    return rows
