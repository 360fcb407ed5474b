"""`shardvec load`'s batches: rows the server rejects are reported, and skipped when asked.

The server checks every row against its own limits (which an operator may have changed) and
names the first bad row of a request (`metadata_json[666]: metadata is 80142 bytes as JSON,
the limit is 65536`). The loader maps that index back to the input row, records the row's id
and the reason, and with skip_invalid sends the batch again without it, so the valid rows of a
batch load whole; without skip_invalid the error stops the load, the row named.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shardvec.cluster.client import Collection
from shardvec.contract.errors import InvalidArgument

_ROW = re.compile(r"\b(?:ids|metadata_json|documents|vectors)\[(\d+)\]")


def split_documents(metas: list[dict[str, Any]], fields: Sequence[str]) -> list[str | None] | None:
    """Each row's document: the first of `fields` present (a string) in its metadata. A
    `document` field moves out of the metadata; any other (`text`) stays in it too, as loads
    of earlier versions kept it there for filters and display. None when no row has one."""
    docs: list[str | None] = []
    for m in metas:
        doc = None
        for name in fields:
            if isinstance(m, dict) and isinstance(m.get(name), str):
                doc = m.pop(name) if name == "document" else m[name]
                break
        docs.append(doc)
    return docs if any(d is not None for d in docs) else None


@dataclass
class BatchLoader:
    """Upserts batches into `collection`, recording (input row, id, reason) of each rejection."""

    collection: Collection
    skip_invalid: bool
    loaded: int = 0
    rejected: list[tuple[int, str, str]] = field(default_factory=list)

    def load(
        self,
        offset: int,
        ids: list[str],
        vectors: np.ndarray,
        metas: Sequence[Mapping[str, Any] | None] | None,
        docs: Sequence[str | None] | None,
    ) -> None:
        rows = list(range(len(ids)))  # the batch rows still to send
        while rows:
            try:
                self.collection.upsert(
                    [ids[r] for r in rows],
                    vectors[rows],
                    [metas[r] for r in rows] if metas is not None else None,
                    documents=[docs[r] for r in rows] if docs is not None else None,
                    batch_size=len(rows),
                )
            except InvalidArgument as exc:
                found = _ROW.search(exc.message)
                if found is None or int(found.group(1)) >= len(rows):
                    raise
                bad = rows[int(found.group(1))]
                self.rejected.append((offset + bad, ids[bad], exc.message))
                if not self.skip_invalid:
                    raise
                rows.remove(bad)
                continue
            self.loaded += len(rows)
            return

    def report(self) -> list[str]:
        """One line per rejected row: its input row, id and the server's reason."""
        return [f"rejected row {row} (id {id_!r}): {why}" for row, id_, why in self.rejected]
