"""`shardvec reembed` and `Client.reembed`: re-embed a collection's documents into a new one
behind an alias, then switch the alias, so readers of the alias change model without downtime.

NAME is an alias (the usual case): its collection is read, NEW is filled, and NAME is switched
to NEW. NAME may instead be a collection: then `alias` must be given, and names NEW once it is
filled (created, or switched if it exists); callers then use the alias.

NEW is created with the source's shards, replicas, metric, index settings, tokenizer and
default expiry (`ttl_seconds`), and the new embedding's dimension: `embedding="minilm"` embeds
in the cluster, a client-side function (`embed`) embeds here. Rows are read with one scroll of
the source (each live row once) and upserted with their metadata, documents and each row's own
absolute expiry as the scroll returns it (`expires_at`, 0: never), so a row leaves NEW at the
moment it would have left the source; a row that expires between its page and its upsert is
left out (it is gone from the source too). Before the switch NEW's count must equal the
source's, read after the fill: rows written to the source meanwhile change its count and stop
the switch (drop NEW and run again). A row without a document cannot be re-embedded: it stops
the run before the switch, naming the row. NEW is left in place when a run stops, and the
source is never dropped here (reads that resolved the alias before the switch finish on it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from shardvec.contract.errors import FailedPrecondition, InvalidArgument
from shardvec.contract.types import Record

EmbeddingFunction = Callable[[list[str]], Any]  # as shardvec.cluster.client's


class Client(Protocol):
    """What a re-embedding needs of shardvec.cluster.client.Client (no import of it: no
    cycle, as cluster/paging.py)."""

    def list_aliases(self) -> dict[str, str]: ...

    def describe(self, name: str) -> dict[str, Any]: ...

    def create_collection(
        self, name: str, dim: int = ..., metric: str = ..., shards: int = ...,
        replicas: int = ..., *, m: int = ..., ef_construction: int = ..., ef: int = ...,
        embedding: str = ..., embedding_function: EmbeddingFunction | None = ...,
        text_tokenizer: str = ..., target_recall: float = ..., ttl_seconds: float = ...,
        payload_on_disk: bool = ...,
    ) -> Any: ...  # fmt: skip

    def get_collection(self, name: str) -> Any: ...

    def create_alias(self, alias: str, collection: str) -> None: ...

    def switch_alias(
        self, alias: str, collection: str, *, embedding_changed: bool = ...
    ) -> str: ...


@dataclass(frozen=True)
class Reembedded:
    """What a re-embedding did: `alias` now names `collection` (it named `previous`)."""

    alias: str
    previous: str
    collection: str
    rows: int


def reembed(
    client: Client,
    name: str,
    *,
    into: str,
    embed: EmbeddingFunction | None = None,
    embedding: str = "",
    alias: str = "",
    page_size: int = 256,
    progress: Callable[[int], None] | None = None,
    total: Callable[[int], None] | None = None,
) -> Reembedded:
    """Fill collection `into` with the rows of the collection behind `name` re-embedded (by
    `embed` here, or by the cluster's `embedding`), check its count, then point the alias
    (`name`, or `alias` when `name` is a collection) at it. `total(n)` is told the row count
    before the first page, `progress(n)` the rows of each page upserted."""
    if (embed is None) == (not embedding):
        raise InvalidArgument("embedding: give exactly one of embed (a function) and embedding")
    aliases = client.list_aliases()
    if name in aliases:
        if alias and alias != name:
            raise InvalidArgument(f"alias: {name!r} is an alias already; leave alias out")
        alias, source = name, aliases[name]
    else:
        if not alias:
            raise InvalidArgument(
                f"alias: {name!r} is a collection, not an alias; give an alias to name "
                f"{into!r} once it is filled (callers then use the alias)"
            )
        source = name
    info = client.describe(source)  # NOT_FOUND for a name that is neither
    if info["count"] is None:
        raise FailedPrecondition(f"collection {source!r}: cannot be counted now (a replica down)")
    if total is not None:
        total(int(info["count"]))
    target = client.create_collection(
        into,
        0,
        info["metric"],
        shards=info["shards"],
        replicas=info["replicas"],
        m=info["m"],
        ef_construction=info["ef_construction"],
        ef=info["ef"],
        embedding=embedding,
        embedding_function=embed,
        text_tokenizer=info["text_tokenizer"],
        target_recall=info["target_recall"],
        ttl_seconds=float(info.get("ttl_seconds") or 0.0),
        payload_on_disk=bool(info.get("payload_on_disk")),
    )
    src = client.get_collection(source)
    rows = 0
    for page in src.scroll_pages(page_size=page_size, include_documents=True):
        records = page.records
        if not records:
            continue
        missing = [r.id for r in records if not r.document]
        if missing:
            raise FailedPrecondition(
                f"collection {source!r}: row {missing[0]!r} has no document to re-embed; "
                f"nothing switched ({into!r} is left partly filled)"
            )
        rows += _upsert_unexpired(target, records)
        if progress is not None:
            progress(len(records))
    have, want = target.count(), src.count()
    if have != want:
        raise FailedPrecondition(
            f"collection {into!r}: {have} rows, the source {source!r} has {want} (rows were "
            "written to it during the re-embedding); nothing switched"
        )
    changed = target.dim != int(info["dim"])
    if alias in aliases:
        previous = client.switch_alias(alias, into, embedding_changed=changed)
    else:
        client.create_alias(alias, into)
        previous = ""
    return Reembedded(alias, previous, into, rows)



def _upsert_unexpired(target: Any, records: list[Record], tries: int = 3) -> int:
    """Upsert `records` re-embedded into `target` with each one's own expiry, leaving out the
    rows expired by now. The server refuses an expires_at it judges past, so a row expiring
    while the call travels is left out on the next try (a clock behind the server's by more
    than that stops the run)."""
    attempt = 0
    while True:
        attempt += 1
        now = time.time()
        live = [r for r in records if not r.expires_at or r.expires_at > now]
        if not live:
            return 0
        try:
            return int(target.upsert_documents(
                [r.id for r in live],
                [str(r.document) for r in live],
                [r.metadata or None for r in live],
                batch_size=len(live),
                expires_at=[r.expires_at for r in live],
            ))  # fmt: skip
        except InvalidArgument as exc:
            if attempt >= tries or "expires_at" not in str(exc):
                raise
