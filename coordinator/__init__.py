"""The coordinator: routes, replicates, fans out and merges; it knows nothing of hnswlib.

Where each concern lives (docs/design-notes.md has the full map):

- `api/`: the public gRPC service and its guard;
- `queries/`: the read path (read view, merge, batching, keyword, fusion, scroll);
- `writes/`: atomic batches and group commit;
- `replicas/`: replica sets, the shard client, placement, replica changes;
- `layout/`: bucket layouts, resharding, pushes to fronts;
- `fronts/`: the query fronts;
- `embedding/`: the embedder pool and the built-in model;
- the runtime (`runtime.py`, `collection.py`), the registry, settings (`config.py`), metrics,
  snapshots and the coordinator actor (`server.py`) at the top.
"""
