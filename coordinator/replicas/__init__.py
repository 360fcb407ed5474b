"""Replicas: the replica set and its read/write rule, the gRPC shard client, placement over nodes,
replica processes on Ray and replica changes (add, remove, move, self-repair)."""
