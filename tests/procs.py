"""Helpers for tests that run shardvec as real processes."""

from __future__ import annotations

from shardvec.cluster.process import ServerProcess, free_port

__all__ = ["ServerProcess", "free_port"]
