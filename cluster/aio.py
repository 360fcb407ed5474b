"""`AsyncClient`: the native client's methods as coroutines, for asyncio programs.

Each call runs the synchronous client's call in a worker thread (`asyncio.to_thread`) rather
than on a second, grpc.aio implementation: front discovery, failover to another front, retries
and the mapping of statuses to shardvec errors then live in one place (cluster/client.py,
cluster/fronts.py) and cannot drift apart; a gRPC channel is safe to share between threads;
and the thread hop costs microseconds beside a round trip. Calls in flight at once are
bounded by the loop's default executor (min(32, cpus + 4) threads; `loop.set_default_executor`
for more).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import numpy as np

from shardvec.cluster.client import DEFAULT_ADDRESS, Client, Collection, Hit

P = ParamSpec("P")
T = TypeVar("T")

__all__ = ["AsyncClient", "AsyncCollection"]


def _in_thread(
    method: Callable[Concatenate[Any, P], T],
) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, T]]:
    """An async method calling `method` on the wrapper's `sync` object in a worker thread."""

    async def call(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.to_thread(method, self.sync, *args, **kwargs)

    call.__name__, call.__qualname__, call.__doc__ = (
        method.__name__,
        method.__name__,
        method.__doc__,
    )
    return call


class AsyncCollection:
    """A collection's calls as coroutines; `sync` is the native Collection underneath."""

    def __init__(self, sync: Collection) -> None:
        self.sync = sync
        self.name, self.dim, self.metric = sync.name, sync.dim, sync.metric

    def __repr__(self) -> str:
        return f"Async{self.sync!r}"

    upsert = _in_thread(Collection.upsert)
    upsert_documents = _in_thread(Collection.upsert_documents)
    update = _in_thread(Collection.update)
    delete = _in_thread(Collection.delete)
    get = _in_thread(Collection.get)
    count = _in_thread(Collection.count)
    facet = _in_thread(Collection.facet)
    search = _in_thread(Collection.search)
    search_texts = _in_thread(Collection.search_texts)
    search_keywords = _in_thread(Collection.search_keywords)
    scale = _in_thread(Collection.scale)
    abort_scale = _in_thread(Collection.abort_scale)

    async def search_ids(
        self, queries: Any, k: int = 10, **kwargs: Any
    ) -> tuple[list[list[str]], list[np.ndarray]]:
        """As Collection.search_ids: ids and score arrays per query, no metadata."""
        return await asyncio.to_thread(self.sync.search_ids, queries, k, **kwargs)

    async def search_by_ids(
        self, ids: Sequence[str], k: int = 10, **kwargs: Any
    ) -> list[list[Hit]]:
        """As Collection.search_by_ids: per id, the hits nearest its stored vector."""
        return await asyncio.to_thread(self.sync.search_by_ids, ids, k, **kwargs)


class AsyncClient:
    """The native Client's calls as coroutines (see the module docstring); `sync` is the
    native Client underneath. Use as `async with AsyncClient(address) as client:`."""

    def __init__(self, address: str = DEFAULT_ADDRESS, **options: Any) -> None:
        """`options` as for Client: api_key, timeout, tls_ca, discover, refresh_s."""
        self.sync = Client(address, **options)

    async def create_collection(self, name: str, dim: int = 0, **options: Any) -> AsyncCollection:
        """As Client.create_collection (metric, shards, replicas, embedding, ...)."""
        col = await asyncio.to_thread(self.sync.create_collection, name, dim, **options)
        return AsyncCollection(col)

    async def get_collection(self, name: str, **options: Any) -> AsyncCollection:
        """As Client.get_collection (embedding_function)."""
        return AsyncCollection(await asyncio.to_thread(self.sync.get_collection, name, **options))

    async def restore_snapshot(
        self, path: str | Path, as_name: str | None = None, **options: Any
    ) -> AsyncCollection:
        """As Client.restore_snapshot (shards, replicas, timeout)."""
        col = await asyncio.to_thread(self.sync.restore_snapshot, path, as_name, **options)
        return AsyncCollection(col)

    discover = _in_thread(Client.discover)
    call = _in_thread(Client.call)
    wait_ready = _in_thread(Client.wait_ready)
    describe = _in_thread(Client.describe)
    rebalance = _in_thread(Client.rebalance)
    wait_layout = _in_thread(Client.wait_layout)
    wait_live = _in_thread(Client.wait_live)
    list_collections = _in_thread(Client.list_collections)
    drop_collection = _in_thread(Client.drop_collection)
    create_snapshot = _in_thread(Client.create_snapshot)
    create_alias = _in_thread(Client.create_alias)
    switch_alias = _in_thread(Client.switch_alias)
    delete_alias = _in_thread(Client.delete_alias)
    list_aliases = _in_thread(Client.list_aliases)
    reembed = _in_thread(Client.reembed)

    async def close(self) -> None:
        self.sync.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
