"""Embedding belongs to its caller: chunks take turns across callers, a caller that leaves
takes its unsent chunks with it, and the read-only key's texts are bounded. The embedders
here are slow fakes with the pool's real scheduling (the model itself is tested in
test_minilm.py and test_text_in.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardvec.contract.errors import ResourceExhausted
from shardvec.contract.settings import CollectionSpec, IndexSettings
from shardvec.coordinator.api.service import VectorSearchService
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.embedding.pool import EmbedderPool
from shardvec.coordinator.queries.batching import MicroBatcher
from shardvec.coordinator.runtime import CoordinatorRuntime
from shardvec.v1 import vector_search_pb2 as pb
from tests.fakes import FakeContext
from tests.inproc import LocalControls, wait_for

CHUNK_S = 0.02  # one chunk's embedding time
DIM = 384  # minilm's


class SlowEmbedder:
    """Takes CHUNK_S a call, whatever its size, one call at a time (as an embedder actor,
    max_concurrency=1, runs them); counts what it embedded."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.texts = 0
        self.calls = 0
        self.lock = asyncio.Lock()

    async def embed(self, name: str, texts: list[str]) -> np.ndarray:
        async with self.lock:
            await asyncio.sleep(CHUNK_S)
        self.texts += len(texts)
        self.calls += 1
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        out[:, 0] = 1.0
        return out

    async def describe(self) -> dict[str, Any]:
        return {"texts": self.texts, "calls": self.calls}

    def close(self) -> None:
        pass


def _pool() -> tuple[EmbedderPool, list[SlowEmbedder]]:
    made: list[SlowEmbedder] = []

    def spawn(node: str) -> SlowEmbedder:
        made.append(SlowEmbedder(node))
        return made[-1]

    return EmbedderPool(spawn, lambda: ["n0"], max_embedders=1, chunk_texts=8), made


def test_one_text_waits_behind_no_other_callers_ten_thousand() -> None:
    async def main() -> None:
        pool, made = _pool()
        big = asyncio.ensure_future(pool.embed("minilm", ["t"] * 10_000, time.monotonic() + 60))
        await wait_for(lambda: bool(made) and made[0].calls >= 2)  # the big call is running
        start = time.monotonic()
        got = await pool.embed("minilm", ["one"], time.monotonic() + 10)
        took = time.monotonic() - start
        assert got.shape == (1, DIM)
        assert took < 4 * CHUNK_S + 0.2, took  # its turn comes after one chunk of the other
        big.cancel()
        await asyncio.gather(big, return_exceptions=True)

    asyncio.run(main())


def test_a_caller_that_leaves_takes_its_unsent_chunks_with_it() -> None:
    async def main() -> None:
        pool, made = _pool()
        with pytest.raises(Exception):  # noqa: B017 - the deadline's error, whichever layer
            await pool.embed("minilm", ["t"] * 10_000, time.monotonic() + 10 * CHUNK_S)
        sent_before = made[0].calls
        cancelled = asyncio.ensure_future(
            pool.embed("minilm", ["t"] * 10_000, time.monotonic() + 60)
        )
        await wait_for(lambda: made[0].calls >= sent_before + 2)  # it is being embedded
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        sent = made[0].calls
        await asyncio.sleep(20 * CHUNK_S)  # time for chunks that should not go out to go out
        assert made[0].calls <= sent + 1  # at most the chunk that was running
        assert made[0].texts < 1000  # of 20,000 asked
        assert pool.dropped > 1000  # chunks never sent
        start = time.monotonic()
        await pool.embed("minilm", ["next"], time.monotonic() + 10)
        assert time.monotonic() - start < 3 * CHUNK_S + 0.2

    asyncio.run(main())



def test_the_read_only_keys_texts_are_bounded(tmp_path: Path) -> None:
    async def main() -> None:
        runtime = CoordinatorRuntime(tmp_path, LocalControls(tmp_path))
        await runtime.restore()
        settings = CoordinatorSettings(
            data_dir=str(tmp_path), api_key="full", read_only_key="ro",
            read_only_max_texts=16, read_only_texts_per_s=20,
        )  # fmt: skip
        pool, made = _pool()
        svc = VectorSearchService(runtime, settings, MicroBatcher(window_s=0.0), embedders=pool)
        await runtime.create(CollectionSpec("t", IndexSettings(dim=DIM), embedding="minilm"))
        ro, full = FakeContext(key="ro"), FakeContext(key="full")

        def search(n: int) -> pb.SearchRequest:
            return pb.SearchRequest(collection="t", query_texts=["q"] * n, k=1)

        with pytest.raises(ResourceExhausted, match="read_only_max_texts"):
            await svc.Search(search(17), ro)
        assert sum(m.texts for m in made) == 0  # refused before anything was embedded
        await svc.Search(search(16), ro)
        with pytest.raises(ResourceExhausted, match="read_only_texts_per_s"):
            for _ in range(3):
                await svc.Search(search(16), ro)
        await svc.Search(search(64), full)  # the full key is not bounded by them
        await runtime.shutdown()

    asyncio.run(main())
