"""Query fronts without Ray: the client's choice of front and its failover, a front's local-
first read order, the layout hook's order (fence, then push), and the epoch fence on a real
shard server over loopback gRPC (a read under another epoch is refused as a stale layout,
over unary calls and the search stream alike)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from shardvec.cluster.fronts import RETRYABLE, FrontSelector
from shardvec.contract.errors import StaleLayout
from shardvec.contract.settings import IndexSettings
from shardvec.contract.types import ShardSearch
from shardvec.coordinator.fronts.publish import next_epoch
from shardvec.coordinator.fronts.runtime import prefer_local
from shardvec.coordinator.replicas.replica_set import Replica
from shardvec.coordinator.replicas.shard_client import RemoteShard
from shardvec.shard.engine import ShardEngine
from shardvec.shard.server import ShardServer
from tests import inproc

DIM = 8


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_calls_go_round_the_fronts_and_pass_over_a_failed_one() -> None:
    clock = _Clock()
    sel = FrontSelector("seed:1", penalty_s=5.0, clock=clock)
    assert sel.pick() == "seed:1"  # nothing discovered: the given address
    sel.update(["b:2", "a:1", "c:3", "a:1"])
    assert [sel.pick() for _ in range(6)] == ["b:2", "c:3", "a:1", "b:2", "c:3", "a:1"]
    sel.failed("b:2")
    picks = {sel.pick() for _ in range(8)}
    assert picks == {"a:1", "c:3"}
    assert sel.healthy() == ["a:1", "c:3"]
    clock.now += 5.1  # the penalty is over: back in the rotation
    assert "b:2" in {sel.pick() for _ in range(3)}


def test_a_failed_call_moves_to_an_untried_front_then_the_seed_then_gives_up() -> None:
    sel = FrontSelector("seed:1", clock=_Clock())
    sel.update(["a:1", "b:2"])
    tried: set[str] = set()
    order = []
    while (address := sel.pick(tried)) is not None:
        order.append(address)
        tried.add(address)
        sel.failed(address)
    assert sorted(order[:2]) == ["a:1", "b:2"] and order[2:] == ["seed:1"]
    sel.failed("a:1")
    sel.failed("b:2")
    assert sel.pick() in {"a:1", "b:2"}  # every front passed over: all are tried again
    sel.update([])
    assert sel.addresses == ["seed:1"]


def test_only_reads_and_upserts_are_resent_to_another_front() -> None:
    assert {"Search", "Get", "Count", "Scroll", "Upsert"} <= RETRYABLE
    assert not {"Delete", "Update", "CreateCollection", "DropCollection"} & RETRYABLE


def test_a_front_reads_its_own_nodes_replicas_first() -> None:
    reps = []
    for i, node in enumerate(["n1", "n2", "n1", "n3"]):
        r = Replica(0, i, None, "c")  # type: ignore[arg-type]
        r.node_id = node
        reps.append(r)
    assert [r.index for r in prefer_local(reps, "n1", 0)] == [0, 2, 1, 3]
    assert [r.index for r in prefer_local(reps, "n1", 1)] == [2, 0, 3, 1]
    assert [r.index for r in prefer_local(reps, "n9", 0)] == [0, 1, 2, 3]


def test_epochs_grow_also_across_a_restart() -> None:
    first = next_epoch(0)
    assert next_epoch(first) > first
    assert next_epoch(first + 10**12) == first + 10**12 + 1  # ahead of the clock: +1
    assert next_epoch(0) >= first  # a restarted coordinator starts from 0: the clock


@pytest.fixture()
def shard_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = ShardEngine(tmp_path / "e", IndexSettings(dim=DIM))
    vecs = np.random.default_rng(3).standard_normal((50, DIM)).astype(np.float32)
    inproc.write(engine, 1, [f"r{i}" for i in range(50)], vecs, [{"i": i} for i in range(50)])
    server = ShardServer(engine, token="t")
    try:
        yield server, vecs
    finally:
        server.stop(0)
        engine.close()


def test_a_replica_answers_only_reads_under_its_epoch(shard_server) -> None:  # type: ignore[no-untyped-def]
    server, vecs = shard_server

    async def main() -> None:
        for stream in (True, False):
            base = RemoteShard("s", server.address, "t", stream=stream)
            query = ShardSearch(queries=vecs[:1], k=3)
            # the coordinator's reads carry no epoch: never fenced, also before any is set
            assert await base.count(None, 5) == 50
            fenced = base.with_epoch(7)
            with pytest.raises(StaleLayout, match=r"stale layout.*epoch 7.*holds none"):
                await fenced.search(query, 5)  # a restarted replica holds none
            assert await base.set_epoch(7, 5) in (0, 7)
            assert (await fenced.search(query, 5)).ids[0, 0] == "r0"
            assert await fenced.count(None, 5) == 50
            assert list((await fenced.get(["r1", "zz"], False, False, 5)).ids) == ["r1"]
            await base.set_epoch(8, 5)  # a layout change: epoch 7's readers are refused
            for call in (fenced.search(query, 5), fenced.count(None, 5)):
                with pytest.raises(StaleLayout, match="holds 8"):
                    await call
            assert (await base.with_epoch(8).search(query, 5)).ids[0, 0] == "r0"
            await base.set_epoch(0, 5)  # left LIVE: cleared, every front refused
            with pytest.raises(StaleLayout):
                await base.with_epoch(8).count(None, 5)
            figures = (await base.info(5)).figures
            assert figures["epoch_reads"] >= 4 and figures["stale_reads"] >= 4
            await fenced.close()  # a view: the shared channel stays open
            assert await base.count(None, 5) == 50
            await base.close()

    asyncio.run(main())


def test_layout_changed_fences_the_live_replicas_before_the_push(tmp_path: Path) -> None:
    """The hook's order: the new epoch is on every LIVE replica when the view is pushed, a
    replica that left LIVE is cleared, and a LIVE one that cannot take the epoch is shown
    DEAD to the fronts (real shard servers on loopback, no Ray)."""
    from shardvec.contract.settings import CollectionSpec
    from shardvec.coordinator.fronts.publish import CollectionView, LayoutPublisher
    from shardvec.coordinator.queries.reads import CollectionReads
    from shardvec.coordinator.replicas.replica_set import ReplicaSet, ReplicaState

    engines = [ShardEngine(tmp_path / f"e{i}", IndexSettings(dim=DIM)) for i in range(3)]
    servers = [ShardServer(e, token="t") for e in engines]
    spec = CollectionSpec("pub", IndexSettings(dim=DIM), shards=1, replicas=3)

    async def main() -> None:
        replicas = []
        for i, server in enumerate(servers):
            r = Replica(0, i, None, "pub")  # type: ignore[arg-type]
            r.client = RemoteShard(f"pub/r{i}", server.address, "t", stream=False)
            r.node_id = f"n{i}"
            replicas.append(r)
        replicas[0].state = ReplicaState.LIVE
        replicas[1].state = ReplicaState.DEAD
        replicas[2].state = ReplicaState.LIVE
        await replicas[1].remote().set_epoch(5, 5)  # it held an epoch while it was LIVE
        servers[2].stop(0)  # LIVE in the coordinator's eyes, but it cannot take the epoch
        rs = ReplicaSet(0, replicas)
        col = CollectionReads(spec, [rs])
        pushed: list[tuple[str, CollectionView | None, dict[str, int]]] = []

        class Sink:
            async def push(self, name: str, view: CollectionView | None) -> None:
                live = {
                    r.name: int((await r.remote().info(5)).figures["epoch"])
                    for r in replicas[:2]
                }
                pushed.append((name, view, live))

        pub = LayoutPublisher(lambda: {"pub": col}, lambda n: True, lambda n: b"uid", Sink())
        await pub.layout_changed("pub")
        name, view, seen = pushed[0]
        assert view is not None and name == "pub"
        epoch = view.epoch
        assert seen == {"pub/shard-0/replica-0": epoch, "pub/shard-0/replica-1": 0}  # both before
        states = [p.state.value for p in view.shards[0]]
        assert states == ["live", "dead", "dead"]  # r2 is kept from the fronts
        await pub.layout_changed("pub")
        latest = pushed[1][1]
        assert latest is not None and latest.epoch > epoch
        assert pub.views()["pub"].epoch == latest.epoch
        for r in replicas:
            await r.remote().close()

    try:
        asyncio.run(main())
    finally:
        for server, engine in zip(servers, engines, strict=True):
            server.stop(0)
            engine.close()
