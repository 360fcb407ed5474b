"""shardvec: a distributed, sharded vector search cluster on Ray, hnswlib and gRPC.

One installed namespace. The repository keeps its layers in top-level folders, installed
here by pyproject's package-dir (and linked in proto/shardvec/ for a source checkout):

- `shardvec.v1`: the generated wire code of proto/shardvec/v1/*.proto;
- `shardvec.contract`: wire conversions, errors, validation and the filter language;
- `shardvec.shard`: the engine of one replica (shard/);
- `shardvec.coordinator`: routing, replication, fan-out and merge (coordinator/);
- `shardvec.cluster`: bring-up, the CLI and the Python client (cluster/);
- `shardvec.bench`: the benchmarks (bench/).

`from shardvec import Client` is the client; it loads neither Ray nor hnswlib. `AsyncClient`
is the same calls as coroutines (cluster/aio.py); `from shardvec import chroma` is the
Chroma-shaped client (`chroma.HttpClient(host, port)`, cluster/chroma.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shardvec.cluster import chroma
    from shardvec.cluster.aio import AsyncClient
    from shardvec.cluster.client import Client, Collection, Hit, Record

__all__ = ["AsyncClient", "Client", "Collection", "Hit", "Record", "chroma"]


def __getattr__(name: str) -> Any:
    if name == "chroma":
        from shardvec.cluster import chroma

        return chroma
    if name == "AsyncClient":
        from shardvec.cluster.aio import AsyncClient

        return AsyncClient
    if name in __all__:
        from shardvec.cluster import client

        return getattr(client, name)
    raise AttributeError(f"module 'shardvec' has no attribute {name!r}")
