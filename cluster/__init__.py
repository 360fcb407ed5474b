"""Bring-up, CLI and the Python client of shardvec."""

from shardvec.cluster.client import Client, Collection, Hit, Record

__all__ = ["Client", "Collection", "Hit", "Record"]
