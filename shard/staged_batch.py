"""The staged-batch format of one replica: a batch kept durably and invisible to reads between
the two phases of an atomic write (shard/staging.py), as the store's `staged` table holds it.

`Staged` is one batch decoded (its update part `StagedUpdate`, whose JSON is the table's
`updates` column); `load_staged` reads back the batches a replica held when it stopped.
`Updated` is what a committed update changes in place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from shardvec.shard.store import Store
from shardvec.shard.store_rows import decode_metadata


@dataclass(frozen=True)
class StagedUpdate:
    """The in-place part of a staged batch: the ids held when staged, per id the metadata to
    merge (or store) or None and the document or None; the ids reported missing; how many
    upsert_missing ids became upserts of the batch; per id the new absolute expiry (0.0:
    never) or None for every id: each row keeps its own."""

    ids: list[str]
    metadatas: list[dict[str, Any] | None]
    documents: list[str | None]
    replace_metadata: bool
    missing: list[str]
    inserted: int
    expires: list[float] | None = None
    accepted_at: float = 0.0  # the coordinator's clock at acceptance (0.0: the replica's)

    def to_json(self) -> str:
        raw: dict[str, Any] = {
            "ids": self.ids,
            "metadata": self.metadatas,
            "documents": self.documents,
            "replace": self.replace_metadata,
            "missing": self.missing,
            "inserted": self.inserted,
        }
        if self.expires is not None:  # left out when None: the format before expiry
            raw["expires"] = self.expires
        if self.accepted_at:
            raw["at"] = self.accepted_at
        return json.dumps(raw, ensure_ascii=False, separators=(",", ":"))

    @staticmethod
    def from_json(text: str) -> StagedUpdate:
        d = json.loads(text)
        return StagedUpdate(
            [str(i) for i in d["ids"]],
            list(d["metadata"]),
            list(d["documents"]),
            bool(d["replace"]),
            [str(i) for i in d["missing"]],
            int(d["inserted"]),
            [float(e) for e in d["expires"]] if "expires" in d else None,
            float(d.get("at", 0.0)),
        )


@dataclass(frozen=True)
class Staged:
    """A staged batch, decoded: tombstones (`deletes`) first, then the upserts (with their
    `documents`, None for none), then the update of existing rows in place."""

    seq: int
    ids: list[str]
    vectors: npt.NDArray[np.float32]
    metadatas: list[Mapping[str, Any]]
    texts: list[str | None]
    deletes: list[str]
    documents: list[str | None]
    update: StagedUpdate | None = None
    expires: list[float] | None = None  # the upserts' absolute expiries (0.0: never), or None


@dataclass(frozen=True)
class Updated:
    """Rows an update changed in place: their slots, new metadata, its JSON, documents."""

    slots: npt.NDArray[np.int64]
    metadatas: list[dict[str, Any]]
    texts: list[str | None]
    documents: list[str | None]
    expires: list[float] | None = None  # each row's expiry after the update (0.0: never)


def load_staged(store: Store, dim: int, applied_seq: int) -> dict[int, Staged]:
    """The batches staged before the last stop, decoded; ones at or below applied_seq are
    obsolete (caught up from a peer meanwhile) and dropped from the store."""
    out: dict[int, Staged] = {}
    for b in store.staged():
        if b.seq <= applied_seq:
            store.unstage(b.seq)
            continue
        ids = [str(i) for i in json.loads(b.ids_json)]
        texts: list[str | None] = json.loads(b.metadata_json)
        vecs = np.frombuffer(b.vectors or b"", dtype="<f4").reshape(len(ids), dim)
        docs: list[str | None] = [None] * len(ids)
        if b.documents_json:
            docs = json.loads(b.documents_json)
        out[b.seq] = Staged(
            b.seq,
            ids,
            vecs.astype(np.float32),
            [decode_metadata(t) for t in texts],
            texts,
            [str(i) for i in json.loads(b.deletes_json)],
            docs,
            StagedUpdate.from_json(b.updates_json) if b.updates_json else None,
            [float(e) for e in json.loads(b.expires_json)] if b.expires_json else None,
        )
    return out
