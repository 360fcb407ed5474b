"""Group commit: an idle collection writes at once; upserts that arrive while a write is in
flight go out together; later rows of an id win; a failed group (it applied nothing) is
retried caller by caller; deletes go alone, in order; a write that fails alone fails its
caller."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import numpy as np
import pytest

from shardvec.contract.errors import InvalidArgument, ReplicaDown
from shardvec.contract.types import ShardWrite
from shardvec.coordinator.writes.group_commit import WriteCombiner
from tests.inproc import wait_for


class Shard:
    """A fake replicated write: records each group; the first one waits for `gate`."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.writes: list[tuple[list[str], np.ndarray, list[str]]] = []
        self.gate = gate
        self.rows: dict[str, tuple[float, str]] = {}
        self.fail: BaseException | None = None

    async def send(
        self, writes: Mapping[int, ShardWrite], deadline: float, decide_by: float | None,
        epoch: int | None = None,
    ) -> dict[int, int]:
        assert deadline > time.monotonic()
        assert list(writes) == [0]
        w = writes[0]
        ids, metas = list(w.ids), list(w.metadata_json)
        if w.delete_ids:
            self.writes.append((["-" + i for i in w.delete_ids], np.empty((0, 2)), []))
            for i in w.delete_ids:
                self.rows.pop(i, None)
            return {0: len(w.delete_ids)}
        assert w.vectors is not None
        vectors = w.vectors
        assert len(set(ids)) == len(ids), "a batch never carries an id twice"
        self.writes.append((ids, vectors, metas))
        if self.gate is not None and len(self.writes) == 1:
            await self.gate.wait()
        if any(i.startswith("bad") for i in ids):
            raise InvalidArgument("ids[0]: bad id")
        if self.fail is not None:
            raise self.fail
        for j, id_ in enumerate(ids):
            self.rows[id_] = (float(vectors[j, 0]), metas[j] if metas else "")
        return {0: len(ids)}


async def up(
    c: WriteCombiner, ids: list[str], vectors: np.ndarray, metas: list[str], deadline: float
) -> None:
    """One caller's upsert, all on shard 0."""
    await c.write({0: ShardWrite(ids=ids, vectors=vectors, metadata_json=metas)}, deadline)


def rows(ids: list[str], value: float) -> tuple[list[str], np.ndarray]:
    return ids, np.full((len(ids), 2), value, dtype=np.float32)


async def _one_write_in_flight(
    **kwargs: int,
) -> tuple[asyncio.Event, Shard, WriteCombiner, float, asyncio.Future[None]]:
    """A combiner whose first write ("h") is in flight until `gate` is set."""
    gate = asyncio.Event()
    shard = Shard(gate)
    c = WriteCombiner(shard.send, **kwargs)
    d = time.monotonic() + 10
    head = asyncio.ensure_future(up(c, *rows(["h"], 0), [], d))
    await wait_for(lambda: len(shard.writes) == 1)
    return gate, shard, c, d, head


def test_idle_shard_writes_at_once_and_waiting_upserts_share_one_write() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        shard = Shard(gate)
        c = WriteCombiner(shard.send)
        deadline = time.monotonic() + 10
        first = asyncio.ensure_future(up(c, *rows(["a"], 1), ['{"n": 1}'], deadline))
        await wait_for(lambda: len(shard.writes) == 1)  # went out without waiting
        later = [
            asyncio.ensure_future(up(c, *rows([f"b{i}", "x"], 10 + i), [], deadline))
            for i in range(5)
        ]
        await wait_for(lambda: c.queued == 5)
        assert len(shard.writes) == 1 and not any(t.done() for t in later)
        gate.set()
        await asyncio.gather(first, *later)
        assert len(shard.writes) == 2 and c.groups == 2  # five callers, one write
        ids, _, metas = shard.writes[1]
        assert ids == ["b0", "b1", "b2", "b3", "b4", "x"]  # arrival order, x once
        assert metas == []
        assert shard.rows["x"][0] == 14.0  # the last caller's row of "x" won
        assert shard.rows["a"] == (1.0, '{"n": 1}')

    asyncio.run(main())


def test_metadata_of_mixed_callers_lines_up_with_their_rows() -> None:
    async def main() -> None:
        gate, shard, c, d, head = await _one_write_in_flight()
        tasks = [
            asyncio.ensure_future(up(c, *rows(["p", "q"], 1), ['{"p": 1}', '{"q": 1}'], d)),
            asyncio.ensure_future(up(c, *rows(["r"], 2), [], d)),
            asyncio.ensure_future(up(c, *rows(["p"], 3), ['{"p": 2}'], d)),
        ]
        await wait_for(lambda: c.queued == 3)
        gate.set()
        await asyncio.gather(head, *tasks)
        ids, _, metas = shard.writes[1]
        assert ids == ["q", "r", "p"] and metas == ['{"q": 1}', "", '{"p": 2}']
        assert shard.rows["p"] == (3.0, '{"p": 2}')

    asyncio.run(main())


def test_a_rejected_group_is_retried_caller_by_caller() -> None:
    async def main() -> None:
        gate, shard, c, d, head = await _one_write_in_flight()
        good1 = asyncio.ensure_future(up(c, *rows(["g1"], 1), [], d))
        bad = asyncio.ensure_future(up(c, *rows(["bad"], 2), [], d))
        good2 = asyncio.ensure_future(up(c, *rows(["g2"], 3), [], d))
        await wait_for(lambda: c.queued == 3)
        gate.set()
        await asyncio.gather(head, good1, good2)
        with pytest.raises(InvalidArgument, match="bad id"):
            await bad
        assert set(shard.rows) == {"h", "g1", "g2"}

    asyncio.run(main())


def test_a_failed_write_fails_its_group_and_the_next_group_still_goes() -> None:
    async def main() -> None:
        gate, shard, c, d, head = await _one_write_in_flight()
        shard.fail = ReplicaDown("shard 0: every replica failed the write")
        group = [asyncio.ensure_future(up(c, *rows([f"f{i}"], i), [], d)) for i in range(3)]
        gate.set()
        with pytest.raises(ReplicaDown):
            await head
        for t in group:
            with pytest.raises(ReplicaDown):
                await t
        shard.fail = None
        await up(c, *rows(["ok"], 9), [], d)
        assert set(shard.rows) == {"ok"}

    asyncio.run(main())


def test_groups_respect_the_row_cap() -> None:
    async def main() -> None:
        gate, shard, c, d, head = await _one_write_in_flight(max_rows=4)
        tasks = [
            asyncio.ensure_future(up(c, *rows([f"{i}a", f"{i}b"], i), [], d)) for i in range(5)
        ]
        await wait_for(lambda: c.queued == 5)
        gate.set()
        await asyncio.gather(head, *tasks)
        assert [len(w[0]) for w in shard.writes] == [1, 4, 4, 2]

    asyncio.run(main())


def test_a_delete_goes_alone_in_its_place_between_upsert_groups() -> None:
    async def main() -> None:
        gate, shard, c, d, head = await _one_write_in_flight()
        a = asyncio.ensure_future(up(c, *rows(["x"], 1), [], d))
        gone = asyncio.ensure_future(c.write({0: ShardWrite(delete_ids=["x"])}, d))
        b = asyncio.ensure_future(up(c, *rows(["y"], 2), [], d))
        b2 = asyncio.ensure_future(up(c, *rows(["z"], 3), [], d))
        await wait_for(lambda: c.queued == 4)
        gate.set()
        await asyncio.gather(head, a, b, b2)
        assert await gone == {0: 1}
        assert [w[0] for w in shard.writes] == [["h"], ["x"], ["-x"], ["y", "z"]]
        assert set(shard.rows) == {"h", "y", "z"}

    asyncio.run(main())


def test_merged_group_keeps_each_rows_document_and_a_later_row_wins() -> None:
    from shardvec.coordinator.writes.group_commit import merge

    def w(ids: list[str], docs: list[str]) -> dict[int, ShardWrite]:
        vecs = np.arange(len(ids) * 2, dtype=np.float32).reshape(len(ids), 2)
        return {0: ShardWrite(ids=ids, vectors=vecs, documents=docs)}

    out = merge([w(["a", "b"], ["doc a", "doc b"]), w(["c"], []), w(["a"], ["doc a2"])])[0]
    assert list(out.ids) == ["b", "c", "a"]
    assert list(out.documents) == ["doc b", "", "doc a2"]
    assert out.nbytes() > merge([w(["b", "c", "a"], [])])[0].nbytes()
