"""Checking an Update at the edge, before any shard is written.

An Update changes the metadata (merged into the stored object, or replaced) and/or the document
of existing rows, vectors kept. Everything the request alone decides is checked first (ids,
metadata JSON and its limit, documents and theirs, vectors only with upsert_missing). Then, when
the answer depends on what is stored, one read of the rows: with upsert_missing and no vectors
an id that is missing is INVALID_ARGUMENT naming it, and a merge whose result would pass
max_metadata_bytes is INVALID_ARGUMENT naming the row, so such a request writes nothing on any
shard. Each shard checks the same again when it stages its part of the atomic batch (a row
written in between), refusing the stage and so aborting the Update everywhere, see
shard/staging.py `plan_update`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from shardvec.contract.codec import loads_json
from shardvec.contract.convert import vectors_from_proto
from shardvec.contract.errors import InvalidArgument
from shardvec.contract.types import ShardUpdate
from shardvec.contract.validation import (
    check_metadata_size,
    parse_metadata_json,
    row_expiries,
    validate_documents,
    validate_ids,
    validate_vectors,
)
from shardvec.coordinator.collection import CollectionRuntime
from shardvec.coordinator.config import CoordinatorSettings


async def check_update(
    request: Any,
    col: CollectionRuntime,
    settings: CoordinatorSettings,
    deadline: float,
    embed: Callable[[list[str]], Awaitable[np.ndarray]] | None = None,
) -> ShardUpdate:
    """The validated Update as the shards get it; InvalidArgument naming the field and row.

    A collection that embeds its documents (`embed`: its embedding function) re-embeds every
    document the Update gives, in the same atomic batch: the row is rewritten whole with its
    new vector, so a row's vector always belongs to its document. Vectors sent with
    upsert_missing serve the rows that come without a document."""
    ids = validate_ids(list(request.ids))
    n = len(ids)
    metas = list(request.metadata_json)
    if metas:
        if len(metas) != n:
            raise InvalidArgument(
                f"metadata_json: expected {n} rows (one per id), got {len(metas)}"
            )
        for i, text in enumerate(metas):
            if text:
                parse_metadata_json(
                    [text], 1, field=f"metadata_json[{i}]", max_bytes=settings.max_metadata_bytes
                )
    docs = list(request.documents)
    if docs:
        validate_documents(docs, n, max_bytes=settings.max_document_bytes)
    # Expiry: named, each row's new absolute expiry; not named, each row keeps its own and
    # rows upsert_missing inserts take the collection default (computed now, once).
    now = time.time()
    expires = row_expiries(list(request.ttl_seconds), list(request.expires_at), n, now)
    default_ttl = col.spec.ttl_seconds
    if not any(metas) and not any(docs) and expires is None:
        raise InvalidArgument(
            "update: give metadata_json and/or documents (or ttl_seconds / expires_at) to change"
        )
    vectors = None
    if request.HasField("vectors"):
        if not request.upsert_missing:
            raise InvalidArgument("vectors: only with upsert_missing (an update keeps vectors)")
        vectors = validate_vectors(
            vectors_from_proto(request.vectors, col.dim), col.dim, col.spec.index.metric
        )
        if len(vectors) != n:
            raise InvalidArgument(f"vectors: {len(vectors)} rows for {n} ids")
    reembed = embed is not None and any(docs)
    if reembed:
        assert embed is not None
        with_doc = [i for i, d in enumerate(docs) if d]
        embedded = await embed([docs[i] for i in with_doc])
        full = np.zeros((n, col.dim), dtype=np.float32) if vectors is None else vectors.copy()
        full[with_doc] = embedded
        vectors = full
    need_found = request.upsert_missing and (vectors is None or reembed)
    merge = any(metas) and not request.replace_metadata
    if need_found or merge:
        found, stored, _ = await col.get(ids, merge, False, deadline)
        where = {id_: j for j, id_ in enumerate(found)}
        for i, id_ in enumerate(ids):
            j = where.get(id_)
            if j is None:
                if need_found and not (reembed and docs[i]) and not request.HasField("vectors"):
                    raise InvalidArgument(
                        f"ids[{i}]: {id_!r} is not in the collection; upsert_missing inserts "
                        f"it, and needs its vector (vectors, one row per id)"
                    )
                continue
            if merge and metas[i]:
                old = loads_json(stored[j]) if stored[j] else {}
                merged = {**old, **loads_json(metas[i])}
                check_metadata_size(
                    merged, f"metadata_json[{i}] ({id_!r} merged)", settings.max_metadata_bytes
                )
    return ShardUpdate(
        ids=ids,
        metadata_json=metas,
        documents=docs,
        replace_metadata=bool(request.replace_metadata),
        upsert_missing=bool(request.upsert_missing),
        vectors=vectors,
        max_metadata_bytes=settings.max_metadata_bytes,
        reembed=reembed,
        expires_at=expires if expires is not None else [],
        insert_expires_at=now + default_ttl if default_ttl else 0.0,
        accepted_at=now,
    )
