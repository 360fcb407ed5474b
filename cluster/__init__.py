"""Bring-up, CLI and the Python client of shardvec."""

from cluster.client import Client, Collection, Hit, Record

__all__ = ["Client", "Collection", "Hit", "Record"]
