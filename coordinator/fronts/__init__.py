"""Query fronts: any node answers the public API, so query throughput grows with the cluster.

A front is a Ray actor pinned to its node (NodeAffinitySchedulingStrategy, soft=False,
detached, in namespace "shardvec"), one per live node: the coordinator's `FrontPool` starts
it when the node joins and drops it when the node leaves (coordinator/per_node.py, the same
pattern as the embedder pool). It serves the whole `shardvec.v1.VectorSearch` service through
coordinator/api/server.py, so auth, TLS, limits, health and reflection are the
coordinator's own.

- Reads (List, Describe, Get, Count, Search, Scroll, query_texts, query_ids, ClusterInfo) are
  answered by the front itself: the read code of coordinator/api/read_service.py
  (`ReadService`) runs over a `FrontRuntime`, the layout as the coordinator pushed it
  (coordinator/fronts/publish.py), fanning out to the replicas over gRPC, those on the front's
  own node first.
- Writes and collection changes (Upsert, Update, Delete, Create/Drop, snapshots) are forwarded
  to the coordinator's public port as they came, with the caller's metadata (API key) and
  what is left of its deadline; the coordinator orders and acknowledges them as it does any
  write, so a front adds no way to lose one.
- Every shard read carries the view's layout epoch. A replica refuses one that is not its own
  ("stale layout"); the front then pulls the published views from the coordinator and runs the
  call again within its deadline. So a front that missed a push never reads a replica that
  left LIVE, one catching up, or shards under an old layout.
"""
