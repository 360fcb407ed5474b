"""Where replicas go: placement of a new replica, which replicas a lowering removes, and
rebalancing moves. Pure functions over a snapshot of the cluster (no Ray, no I/O).

A node's load is the rows of every replica on it, across collections. The rules:
- a new replica goes to the least loaded node holding no replica of its shard (a sibling),
  else to the least loaded node with the fewest siblings;
- lowering the replica count removes replicas that are not LIVE first, then those on the most
  loaded nodes (a node holding two of the shard's replicas first), so the live replicas the
  shard keeps are spread and the cluster's load evens out;
- rebalancing first separates siblings sharing a node where a node without one exists (a
  replica on a node that is gone is placed too), then moves replicas from the most to the
  least loaded node while that narrows the gap, until every node is within one replica's rows
  of every other (a tighter target is not reachable by whole replicas).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import partial

ShardKey = tuple[str, int]  # (collection, shard)


@dataclass(frozen=True)
class Placed:
    """One replica as placement sees it."""

    collection: str
    shard: int
    replica: int
    node: str  # "" when unknown (not yet started)
    rows: int
    live: bool = True

    @property
    def key(self) -> ShardKey:
        return (self.collection, self.shard)


@dataclass(frozen=True)
class Move:
    """Add a replica of `key` on `target`, catch it up, then remove `replica` (on `source`)."""

    collection: str
    shard: int
    replica: int
    source: str  # "" or a node that is gone: the replica is re-created rather than moved
    target: str
    rows: int

    def to_dict(self) -> dict[str, object]:
        return {
            "collection": self.collection, "shard": self.shard, "replica": self.replica,
            "source": self.source, "target": self.target, "rows": self.rows,
        }


def node_loads(nodes: Iterable[str], replicas: Iterable[Placed]) -> dict[str, int]:
    """Rows held on each of `nodes` (replicas on other nodes are not counted)."""
    loads = dict.fromkeys(nodes, 0)
    for r in replicas:
        if r.node in loads:
            loads[r.node] += r.rows
    return loads


def choose_node(nodes: Sequence[str], replicas: Sequence[Placed], key: ShardKey) -> str:
    """The node for a new replica of shard `key`; "" when no node is known."""
    if not nodes:
        return ""
    loads = node_loads(nodes, replicas)
    siblings = Counter(r.node for r in replicas if r.key == key)
    return min(nodes, key=lambda n: (siblings[n], loads[n], n))


def choose_removals(
    nodes: Sequence[str], replicas: Sequence[Placed], key: ShardKey, count: int
) -> list[Placed]:
    """The `count` replicas of shard `key` a lowering removes, in removal order."""
    chosen: list[Placed] = []
    remaining = list(replicas)
    for _ in range(count):
        loads = node_loads(nodes, remaining)
        mine = [r for r in remaining if r.key == key]
        if not mine:
            break
        siblings = Counter(r.node for r in mine)

        victim = min(mine, key=partial(_removal_rank, loads, siblings))
        chosen.append(victim)
        remaining.remove(victim)
    return chosen


def _removal_rank(
    loads: dict[str, int], siblings: Counter[str], r: Placed
) -> tuple[int, int, int, int, int]:
    """Sorts first what a lowering removes first."""
    gone = r.node not in loads  # on no known node: it would be re-created anyway
    return (int(r.live), int(not gone), -siblings[r.node], -loads.get(r.node, 0), -r.replica)


def plan_moves(
    nodes: Sequence[str],
    replicas: Sequence[Placed],
    max_moves: int = 1000,
    movable: Callable[[Placed], bool] | None = None,
) -> list[Move]:
    """Moves that level the rows per node; applying them in order gives the planned state.

    Every node ends within one replica's rows (the largest replica's) of every other, unless
    that would put two replicas of a shard on one node, which is avoided when possible. Only
    replicas `movable` accepts move (all by default); the others count as load."""
    can_move = movable or (lambda p: True)
    nodes = sorted(set(nodes))
    if not nodes:
        return []
    state = list(replicas)
    moves: list[Move] = []

    def apply(r: Placed, target: str) -> None:
        moves.append(Move(r.collection, r.shard, r.replica, r.node, target, r.rows))
        state[state.index(r)] = replace(r, node=target)

    # 1. Replicas on no live node, then siblings sharing a node where another node has none.
    for r in sorted(state, key=lambda p: (p.node in nodes, p.key, p.replica)):
        if len(moves) >= max_moves:
            return moves
        current = next(p for p in state if p.key == r.key and p.replica == r.replica)
        if not can_move(current):
            continue
        others = [p for p in state if p is not current]
        shared = any(p.key == r.key and p.node == current.node for p in others)
        if current.node in nodes and not shared:
            continue
        held = {p.node for p in others if p.key == r.key}
        free = [n for n in nodes if n not in held]
        if current.node in nodes and not free:
            continue  # R > nodes: sharing a node cannot be avoided
        target = choose_node(free or nodes, others, r.key)
        if target != current.node:
            apply(current, target)

    # 2. From a more to a less loaded node (the widest such gap first) while one is more
    #    than a replica's rows apart; each move lowers the sum of squared loads, so it ends.
    biggest = max((p.rows for p in state), default=0)
    while len(moves) < max_moves:
        loads = node_loads(nodes, state)
        pairs = sorted(
            ((loads[h] - loads[lo], h, lo) for h in nodes for lo in nodes),
            key=lambda t: (-t[0], t[1], t[2]),
        )
        step: tuple[Placed, str] | None = None
        for gap, heavy, light in pairs:
            if gap <= biggest:
                break
            on_light = {p.key for p in state if p.node == light}
            # a move narrows the gap only when the replica is smaller than it; never onto a
            # node that holds a sibling
            candidates = [
                p for p in state
                if p.node == heavy and 0 < p.rows < gap and p.key not in on_light
                and can_move(p)
            ]
            if candidates:
                best = min(candidates, key=lambda p: (abs(gap - 2 * p.rows), p.key, p.replica))
                step = (best, light)
                break
        if step is None:
            break
        apply(*step)
    return moves


def is_level(nodes: Sequence[str], replicas: Sequence[Placed]) -> bool:
    """Whether every node is within one replica's rows of every other."""
    if not nodes:
        return True
    loads = node_loads(nodes, replicas).values()
    biggest = max((p.rows for p in replicas), default=0)
    return max(loads) - min(loads) <= biggest
