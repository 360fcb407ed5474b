"""The write path: atomic batches across shards (stage, decide, resolve) and group commit."""
