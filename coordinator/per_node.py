"""One member per live Ray node: the pattern the embedder pool and the query fronts share.

The coordinator keeps, for some kind of actor, `per_node` members on every live node (up to
`limit` in all), keyed "node" (or "node/i" past the first); `sync_per_node` is called with the
live nodes every few seconds (ray.nodes()), starts the members of nodes that joined and
closes those of nodes that left.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping, Sequence
from typing import TypeVar

log = logging.getLogger(__name__)

M = TypeVar("M")


def node_of(key: str) -> str:
    """The node id of member key "node" or "node/i"."""
    return key.partition("/")[0]


def sync_per_node(
    members: MutableMapping[str, M],
    live: Sequence[str],
    spawn: Callable[[str], M],
    close: Callable[[M], None],
    *,
    per_node: int = 1,
    limit: int | None = None,
    what: str = "member",
) -> tuple[list[str], list[str]]:
    """Bring `members` to `per_node` per node of `live` (at most `limit` in all); returns the
    keys started and the keys closed."""
    gone = [k for k in members if node_of(k) not in live]
    for key in gone:
        log.info("%s of node %s: the node left", what, key[:12])
        close(members.pop(key))
    started: list[str] = []
    for i in range(per_node):
        for node in live:
            key = node if i == 0 else f"{node}/{i}"
            if limit is not None and len(members) >= limit:
                break
            if key not in members:
                members[key] = spawn(node)
                started.append(key)
                log.info("%s %d on node %s", what, i, node[:12])
    return started, gone
