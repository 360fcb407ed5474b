"""The public API: the VectorSearch servicer, its guard (keys, decoding, limits), response sizing,
scroll cursors and the checks an Update needs before any shard is written."""
