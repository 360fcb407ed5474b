"""Benchmarks that measure shardvec against the libraries it wraps, in the same run."""
