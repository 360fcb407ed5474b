"""Ray Data in and out of a collection: `ShardvecDatasink` and `ShardvecDatasource`.

Sink: `ds.write_datasink(ShardvecDatasink(address, "docs"))` (or `write_dataset`) ingests a
Dataset from its blocks in parallel, each write task upserting its blocks through its own
client in batches. A batch is acknowledged as a plain Upsert is, once every in-sync replica
of its shards holds it durably; one that fails with UNAVAILABLE or DEADLINE_EXCEEDED (a
replica or the coordinator restarting) is sent again after a backoff, which is safe because
an upsert is idempotent by id. Bad rows fail the write (INVALID_ARGUMENT names the row).

Source: `ray.data.read_datasource(ShardvecDatasource(address, "docs"))` reads a collection
(or the rows matching `where`) into a Dataset, one read task per slice of the scroll order;
by default as many slices as the collection has shards, so each task scrolls one shard. Each
task's rows come from one scroll, so every row alive while it runs comes exactly once.

Columns: `id` (string), `vector` (float32 tensor of the collection's dimension) and
`metadata_json` (the row's metadata as JSON text, "" for none). The sink reads the same, or a
`metadata` column of dicts or JSON texts, or the named `metadata_columns`, and a `document`
column where there is one (None or "": no document). A Dataset with documents and no vector
column goes to a collection with an embedding, which embeds the documents in the same
request: so a row's vector is always its document's.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from ray.data import Datasink, Datasource, ReadTask
from ray.data.block import Block, BlockAccessor, BlockMetadata
from ray.data.datasource.datasink import WriteResult

from shardvec.cluster.client import Client, Collection, Page
from shardvec.contract.codec import loads_json
from shardvec.contract.errors import DeadlineExceeded, InvalidArgument, Unavailable

RETRYABLE = (Unavailable, DeadlineExceeded)
ROWS_PER_BLOCK = 10_000


@dataclass(frozen=True)
class Endpoint:
    """Where a task connects: picklable, unlike a client."""

    address: str
    collection: str
    api_key: str | None = None
    timeout: float = 120.0

    def open(self) -> tuple[Client, Collection]:
        client = Client(self.address, api_key=self.api_key, timeout=self.timeout)
        try:
            return client, with_retries(lambda: client.get_collection(self.collection))
        except BaseException:
            client.close()
            raise


def with_retries(
    fn: Callable[[], Any], retries: int = 6, backoff_s: float = 0.5
) -> Any:
    """`fn()`, again after 0.5, 1, 2 ... s when it fails with UNAVAILABLE or DEADLINE_EXCEEDED."""
    for attempt in range(retries + 1):
        try:
            return fn()
        except RETRYABLE:
            if attempt == retries:
                raise
            time.sleep(backoff_s * 2**attempt)
    raise AssertionError("unreachable")


class ShardvecDatasink(Datasink[int]):
    """Upserts a Dataset's rows into collection `collection` of the cluster at `address`.

    After `write_datasink` returns, `rows_written` holds the number of rows acknowledged."""

    def __init__(
        self,
        address: str,
        collection: str,
        *,
        api_key: str | None = None,
        id_column: str = "id",
        vector_column: str = "vector",
        metadata_columns: Sequence[str] | None = None,
        document_column: str = "document",
        batch_size: int = 1000,
        retries: int = 6,
        timeout: float = 120.0,
    ) -> None:
        if batch_size < 1:
            raise InvalidArgument(f"batch_size must be >= 1, got {batch_size}")
        self.endpoint = Endpoint(address, collection, api_key, timeout)
        self.id_column = id_column
        self.vector_column = vector_column
        self.metadata_columns = list(metadata_columns) if metadata_columns else None
        self.document_column = document_column
        self.batch_size = batch_size
        self.retries = retries
        self.rows_written = 0

    def get_name(self) -> str:
        return f"Shardvec({self.endpoint.collection})"

    def write(self, blocks: Iterable[Block], ctx: Any) -> int:
        client, col = self.endpoint.open()
        written = 0
        try:
            for block in blocks:
                batch = BlockAccessor.for_block(block).to_numpy()
                if not isinstance(batch, dict):
                    raise InvalidArgument("shardvec sink: a block without named columns")
                ids = [str(i) for i in batch[self.id_column].tolist()]
                metas = self._metadata(batch, len(ids))
                docs = self._documents(batch)
                vectors = (_matrix(batch[self.vector_column])
                           if self.vector_column in batch or docs is None else None)
                for start in range(0, len(ids), self.batch_size):
                    stop = min(start + self.batch_size, len(ids))
                    part_metas = metas[start:stop] if metas is not None else None
                    send: Callable[[], int]
                    if vectors is None:  # the collection embeds the documents
                        assert docs is not None
                        send = functools.partial(
                            col.upsert_documents, ids[start:stop],
                            [d or "" for d in docs[start:stop]], part_metas,
                            batch_size=self.batch_size,
                        )
                    else:
                        send = functools.partial(
                            col.upsert, ids[start:stop], vectors[start:stop], part_metas,
                            documents=docs[start:stop] if docs is not None else None,
                            batch_size=self.batch_size,
                        )
                    written += with_retries(send, self.retries)
        finally:
            client.close()
        return written

    def _metadata(self, batch: Mapping[str, np.ndarray], n: int) -> list[dict[str, Any]] | None:
        if self.metadata_columns is not None:
            cols = {c: batch[c].tolist() for c in self.metadata_columns}
            return [{c: v[i] for c, v in cols.items() if v[i] is not None} for i in range(n)]
        for name in ("metadata_json", "metadata"):
            if name in batch:
                return [_as_dict(v, name, i) for i, v in enumerate(batch[name].tolist())]
        return None

    def _documents(self, batch: Mapping[str, np.ndarray]) -> list[str | None] | None:
        if self.document_column not in batch:
            return None
        docs = [None if d is None or d == "" else str(d)
                for d in batch[self.document_column].tolist()]
        return docs if any(d is not None for d in docs) else None

    def on_write_complete(self, write_result: WriteResult[int]) -> None:
        self.rows_written = sum(write_result.write_returns)


def _as_dict(value: Any, column: str, row: int) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, (str, bytes)):
        value = loads_json(value if isinstance(value, str) else value.decode("utf-8"))
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"{column}[{row}]: expected an object, got {type(value).__name__}")
    return dict(value)


def _matrix(column: np.ndarray) -> np.ndarray:
    """A (n, dim) float32 array from a tensor column or a column of per-row arrays."""
    if column.dtype == object:
        return np.stack([np.asarray(v, dtype=np.float32) for v in column])
    return np.asarray(column, dtype=np.float32)


def write_dataset(ds: Any, address: str, collection: str, *, concurrency: int | None = None,
                  **sink_args: Any) -> int:
    """Write Dataset `ds` into the collection with `concurrency` write tasks (None: Ray
    Data's choice); returns the number of rows acknowledged."""
    sink = ShardvecDatasink(address, collection, **sink_args)
    ds.write_datasink(sink, concurrency=concurrency)
    return sink.rows_written


class ShardvecDatasource(Datasource):
    """Reads collection `collection` (or its rows matching `where`) into a Dataset, one read
    task per slice of the scroll order (`slices`, default: one per shard)."""

    def __init__(
        self,
        address: str,
        collection: str,
        *,
        api_key: str | None = None,
        where: Mapping[str, Any] | None = None,
        include_vectors: bool = True,
        page_size: int = 1000,
        slices: int | None = None,
        timeout: float = 120.0,
    ) -> None:
        self.endpoint = Endpoint(address, collection, api_key, timeout)
        self.where = dict(where) if where else None
        self.include_vectors = include_vectors
        self.page_size = page_size
        client, col = self.endpoint.open()
        try:
            info = client.describe(collection)
            self.dim = col.dim
            self.rows = col.count(self.where)
        finally:
            client.close()
        self.slices = slices or int(info["shards"])
        if not 1 <= self.slices <= 1024:
            raise InvalidArgument(f"slices must be in [1, 1024], got {self.slices}")

    def get_name(self) -> str:
        return f"Shardvec({self.endpoint.collection})"

    def estimate_inmemory_data_size(self) -> int | None:
        return self.rows * (4 * self.dim * self.include_vectors + 200)

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        per_slice = -(-self.rows // self.slices)
        return [
            ReadTask(
                functools.partial(self._read, i),
                BlockMetadata(
                    num_rows=None,
                    size_bytes=per_slice * (4 * self.dim * self.include_vectors + 200),
                    exec_stats=None,
                    input_files=None,
                ),
                per_task_row_limit=per_task_row_limit,
            )
            for i in range(self.slices)
        ]

    def _read(self, part: int) -> Iterator[Block]:
        """One slice's rows, in blocks of about ROWS_PER_BLOCK."""
        client, col = self.endpoint.open()
        try:
            ids: list[str] = []
            metas: list[str] = []
            vecs: list[np.ndarray] = []
            cursor = b""
            while True:
                page: Page = with_retries(functools.partial(self._page, col, cursor, part))
                for r in page.records:
                    ids.append(r.id)
                    metas.append(json.dumps(r.metadata, separators=(",", ":")) if r.metadata
                                 else "")
                    if self.include_vectors and r.vector is not None:
                        vecs.append(r.vector)
                cursor = page.next_cursor
                if len(ids) >= ROWS_PER_BLOCK or (not cursor and ids):
                    yield self._block(ids, metas, vecs)
                    ids, metas, vecs = [], [], []
                if not cursor:
                    return
        finally:
            client.close()

    def _page(self, col: Collection, cursor: bytes, part: int) -> Page:
        """One page (one Scroll call) of slice `part` from `cursor`."""
        pages = col.scroll_pages(
            self.where,
            page_size=self.page_size,
            include_vectors=self.include_vectors,
            cursor=cursor,
            part=(part, self.slices),
        )
        return next(iter(pages))

    def _block(self, ids: list[str], metas: list[str], vecs: list[np.ndarray]) -> Block:
        batch: dict[str, np.ndarray] = {
            "id": np.array(ids, dtype=object),
            "metadata_json": np.array(metas, dtype=object),
        }
        if self.include_vectors:
            batch["vector"] = np.stack(vecs).astype(np.float32)
        return BlockAccessor.batch_to_block(batch)


def read_dataset(address: str, collection: str, **source_args: Any) -> Any:
    """The collection as a Dataset (see ShardvecDatasource for the arguments)."""
    import ray.data

    return ray.data.read_datasource(ShardvecDatasource(address, collection, **source_args))
