"""The placement planner (coordinator/replicas/placement.py), no Ray: where a new replica goes,
which replicas a lowering removes, and the moves that level rows over nodes (joins, leaves, R >
nodes), never two replicas of a shard on one node when avoidable."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from shardvec.coordinator.replicas.placement import (
    Move,
    Placed,
    choose_node,
    choose_removals,
    is_level,
    node_loads,
    plan_moves,
)


def layout(spec: dict[str, list[tuple[int, int, int]]], collection: str = "c") -> list[Placed]:
    """node -> [(shard, replica, rows)]"""
    return [
        Placed(collection, shard, replica, node, rows)
        for node, held in spec.items()
        for shard, replica, rows in held
    ]


def apply(replicas: list[Placed], moves: list[Move]) -> list[Placed]:
    out = list(replicas)
    for m in moves:
        i = next(
            i for i, p in enumerate(out)
            if (p.collection, p.shard, p.replica) == (m.collection, m.shard, m.replica)
        )
        assert out[i].node == m.source
        out[i] = replace(out[i], node=m.target)
    return out


def no_shared_nodes(replicas: list[Placed]) -> bool:
    return all(n == 1 for n in Counter((p.key, p.node) for p in replicas).values())


def test_new_replica_goes_to_the_least_loaded_node_without_a_sibling() -> None:
    reps = layout({"a": [(0, 0, 100), (1, 0, 100)], "b": [(2, 0, 100)], "c": [(0, 1, 10)]})
    # shard 0 is on a and c: b is the only node without a sibling, though c is lighter
    assert choose_node(["a", "b", "c"], reps, ("c", 0)) == "b"
    # shard 2 is on b: c is the lightest of the rest
    assert choose_node(["a", "b", "c"], reps, ("c", 2)) == "c"
    # every node holds a sibling (R > nodes): the fewest siblings, then the lightest
    full = layout({"a": [(0, 0, 5), (0, 2, 5)], "b": [(0, 1, 50)]})
    assert choose_node(["a", "b"], full, ("c", 0)) == "b"
    assert choose_node([], reps, ("c", 0)) == ""


def test_lowering_removes_dead_first_then_from_the_most_loaded_node() -> None:
    reps = layout({
        "a": [(0, 0, 100), (1, 0, 500)],  # a holds 600 rows
        "b": [(0, 1, 100)],
        "c": [(0, 2, 100), (1, 1, 100)],
    })
    out = choose_removals(["a", "b", "c"], reps, ("c", 0), 1)
    assert [(p.node, p.replica) for p in out] == [("a", 0)]
    # two removals: a, then c (200 rows) before b (100 rows)
    out = choose_removals(["a", "b", "c"], reps, ("c", 0), 2)
    assert [(p.node, p.replica) for p in out] == [("a", 0), ("c", 2)]
    # a replica that is not LIVE goes first, wherever it is
    dead = [replace(p, live=False) if p.node == "b" and p.shard == 0 else p for p in reps]
    assert [p.node for p in choose_removals(["a", "b", "c"], dead, ("c", 0), 1)] == ["b"]
    # two replicas of one shard on one node: one of those goes first
    shared = layout({"a": [(0, 0, 10), (0, 1, 10)], "b": [(0, 2, 10), (1, 0, 900)]})
    assert choose_removals(["a", "b"], shared, ("c", 0), 1)[0].node == "a"


def test_a_joining_node_gets_replicas_until_rows_are_level() -> None:
    # 2 shards x 2 replicas of 1000 rows on two nodes; a third node joins empty
    reps = layout({"a": [(0, 0, 1000), (1, 0, 1000)], "b": [(0, 1, 1000), (1, 1, 1000)]})
    nodes = ["a", "b", "c"]
    moves = plan_moves(nodes, reps)
    after = apply(reps, moves)
    assert len(moves) == 1 and moves[0].target == "c"
    assert is_level(nodes, after) and no_shared_nodes(after)
    # many small shards: every node within one replica's rows of every other
    reps = layout({
        "a": [(s, 0, 100 + 10 * s) for s in range(12)],
        "b": [(s, 1, 100 + 10 * s) for s in range(12)],
    })
    nodes = ["a", "b", "c", "d"]
    after = apply(reps, plan_moves(nodes, reps))
    loads = node_loads(nodes, after)
    assert max(loads.values()) - min(loads.values()) <= 210, loads
    assert no_shared_nodes(after)
    # planning again from the levelled state moves nothing
    assert plan_moves(nodes, after) == []


def test_a_level_cluster_plans_no_move() -> None:
    reps = layout({"a": [(0, 0, 10), (1, 1, 10)], "b": [(0, 1, 10), (1, 0, 10)]})
    assert plan_moves(["a", "b"], reps) == []
    assert plan_moves([], reps) == []


def test_replicas_of_a_node_that_left_are_placed_on_the_others() -> None:
    reps = layout({
        "a": [(0, 0, 100), (1, 1, 100)],
        "b": [(0, 1, 100), (2, 0, 100)],
        "gone": [(1, 0, 100), (2, 1, 100)],
    })
    nodes = ["a", "b", "c"]
    moves = plan_moves(nodes, reps)
    after = apply(reps, moves)
    assert all(p.node in nodes for p in after)
    assert {m.source for m in moves[:2]} == {"gone"}
    assert no_shared_nodes(after) and is_level(nodes, after)


def test_more_replicas_than_nodes_shares_nodes_evenly() -> None:
    # R=3 on two nodes: sharing is unavoidable; the planner does not churn on it
    reps = layout({"a": [(0, 0, 100), (0, 2, 100)], "b": [(0, 1, 100)]})
    moves = plan_moves(["a", "b"], reps)
    assert moves == []
    # two copies of a shard on one node while another node has none: separated
    reps = layout({"a": [(0, 0, 100), (0, 1, 100)], "b": [(1, 0, 100), (1, 1, 100)], "c": []})
    after = apply(reps, plan_moves(["a", "b", "c"], reps))
    assert no_shared_nodes(after)


def test_only_movable_replicas_move_but_all_count_as_load() -> None:
    reps = layout({"a": [(0, 0, 1000)], "b": []}) + layout({"a": [(0, 0, 1000)]}, "other")
    moves = plan_moves(["a", "b"], reps, movable=lambda p: p.collection == "c")
    assert [(m.collection, m.target) for m in moves] == [("c", "b")]
    assert plan_moves(["a", "b"], reps, movable=lambda p: False) == []
