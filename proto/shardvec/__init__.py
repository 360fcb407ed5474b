"""shardvec: a distributed, sharded vector search cluster on Ray, hnswlib and gRPC.

One installed namespace. The repository keeps its layers in top-level folders, installed
here by pyproject's package-dir (and linked in proto/shardvec/ for a source checkout):

- `shardvec.v1`: the generated wire code of proto/shardvec/v1/*.proto;
- `shardvec.contract`: wire conversions, errors, validation and the filter language;
- `shardvec.shard`: the engine of one replica (shard/);
- `shardvec.coordinator`: routing, replication, fan-out and merge (coordinator/);
- `shardvec.cluster`: bring-up, the CLI and the Python client (cluster/);
- `shardvec.bench`: the benchmarks (bench/).

`from shardvec import Client` is the client; it loads neither Ray nor hnswlib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shardvec.cluster.client import Client, Collection, Hit, Record

__all__ = ["Client", "Collection", "Hit", "Record"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from shardvec.cluster import client

        return getattr(client, name)
    raise AttributeError(f"module 'shardvec' has no attribute {name!r}")
