"""What the read calls of the public API need of a runtime
(coordinator/api/read_service.py ReadService).

The coordinator's `CoordinatorRuntime` and a query front's `FrontRuntime`
(coordinator/fronts/, the layout as the coordinator pushed it) both provide it, so one
read code runs on both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from shardvec.coordinator.aliases import AliasMap
from shardvec.coordinator.queries.reads import CollectionReads


class ReadRuntime(Protocol):
    aliases: AliasMap  # resolved by `get` (coordinator/aliases.py)

    @property
    def collections(self) -> Mapping[str, CollectionReads]: ...

    def get(self, name: str) -> CollectionReads:
        """The served collection `name`, or the one alias `name` names (NOT_FOUND, or
        FAILED_PRECONDITION while restored)."""
        ...

    def served(self) -> list[str]:
        """The names of the served collections, sorted."""
        ...

    def uid(self, name: str) -> bytes:
        """The identity of this incarnation of collection `name` (scroll cursors)."""
        ...
