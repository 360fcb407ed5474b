"""Text in: the pool of embedder actors that turns query texts and documents into vectors.

The rule: the coordinator embeds nothing itself. Texts go to a pool of embedders, one per
live Ray node (up to `max_embedders`), found again every `refresh_s` so the pool grows as
nodes join and drops the members of nodes that left. Work is batched twice:
- concurrent small calls (a Search of one query text) are merged by a MicroBatcher (see
  coordinator/queries/batching.py), with one batch in flight per embedder, so under load a batch
  holds as many texts as arrived while the embedders were busy;
- a large call (an Upsert of 1000 documents) is cut into chunks of `chunk_texts`.
Chunks go out fairly and only while their caller waits: each embedder runs one chunk at a
time, and a free embedder takes the next chunk of the next caller in turn (round-robin over
the callers with chunks waiting), so one caller's 10,000 texts queue behind nobody's one text
and wait their turn beside it. A caller that leaves (its deadline, a cancellation, a client
gone) takes its chunks not yet sent with it; the one running is one chunk, bounded by
`chunk_texts`. A chunk whose embedder died is sent again to another one (embedding has no
side effects).

`Embedder` is the plain class an actor runs (unit-testable without Ray); `embedder_actor_class`
makes it remote in one place; `LocalEmbedder` runs the same model in this process's threads
(tests, and a coordinator without Ray).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from shardvec.contract.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    ShardvecError,
    Unavailable,
)
from shardvec.contract.limits import EMBEDDINGS
from shardvec.coordinator.config import blas_threads_env
from shardvec.coordinator.per_node import sync_per_node
from shardvec.coordinator.queries.batching import MicroBatcher

log = logging.getLogger(__name__)


def load_model(name: str) -> Any:
    """The model behind embedding function `name` (loaded once per process)."""
    if name not in EMBEDDINGS:
        raise FailedPrecondition(f"embedding: unknown embedding function {name!r}")
    from shardvec.coordinator.embedding.minilm import (
        shared_model,  # tokenizers, safetensors: the text extra
    )

    return shared_model()


class Embedder:
    """One embedder: the models it has loaded, and what it has done."""

    def __init__(self) -> None:
        self.texts = 0
        self.calls = 0

    def embed(self, name: str, texts: list[str]) -> np.ndarray:
        out: np.ndarray = load_model(name).embed(texts)
        self.texts += len(texts)
        self.calls += 1
        return out

    def describe(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "texts": self.texts, "calls": self.calls}


def embedder_actor_class() -> Any:
    """The Ray actor class of an embedder: one call at a time (its BLAS threads are its
    parallelism), restarted when its process dies, and a call cut short by that retried."""
    import ray

    return ray.remote(  # type: ignore[call-overload]
        max_restarts=-1, max_task_retries=2, max_concurrency=1
    )(Embedder)


class EmbedderHandle(Protocol):
    node: str

    async def embed(self, name: str, texts: list[str]) -> np.ndarray: ...

    async def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class LocalEmbedder:
    """The model in this process, on a worker thread."""

    def __init__(self, node: str = "local") -> None:
        self.node = node
        self._embedder = Embedder()

    async def embed(self, name: str, texts: list[str]) -> np.ndarray:
        return await asyncio.to_thread(self._embedder.embed, name, texts)

    async def describe(self) -> dict[str, Any]:
        return self._embedder.describe()

    def close(self) -> None:
        pass


class RayEmbedder:
    """An embedder actor placed on `node` (soft affinity: a node short of CPU may refuse it)."""

    def __init__(self, node: str, *, cpus: float, threads: int) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.node = node
        self.handle = embedder_actor_class().options(
            num_cpus=cpus,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=True),
            runtime_env={"env_vars": blas_threads_env(threads)},
        ).remote()

    async def embed(self, name: str, texts: list[str]) -> np.ndarray:
        from ray.exceptions import (
            ActorDiedError,
            ActorUnavailableError,
            RayActorError,
            RayTaskError,
        )

        try:
            return np.asarray(await self.handle.embed.remote(name, texts), dtype=np.float32)
        except (ActorDiedError, ActorUnavailableError, RayActorError) as exc:
            raise _EmbedderLost(f"embedder on node {self.node[:12]}: {exc}") from None
        except RayTaskError as exc:
            # The model's own error (a node without the text extra: FAILED_PRECONDITION with
            # the install command) reaches the caller as itself, not as Ray's wrapper.
            if isinstance(exc.cause, ShardvecError):
                raise exc.cause from None
            raise

    async def describe(self) -> dict[str, Any]:
        return dict(await self.handle.describe.remote())

    def close(self) -> None:
        import ray

        try:
            ray.kill(self.handle, no_restart=True)
        except Exception as exc:
            log.info("kill embedder on %s: %s", self.node[:12], exc)


class _EmbedderLost(Exception):
    """An embedder's process or node went away during a call: try another one."""


@dataclass
class _Member:
    handle: EmbedderHandle
    busy: int = 0


@dataclass
class _Chunk:
    """One chunk of a caller's texts, waiting for an embedder or running on one."""

    name: str
    texts: list[str]
    deadline: float
    future: asyncio.Future[np.ndarray]
    tries: int = 0


Spawn = Callable[[str], EmbedderHandle]


class EmbedderPool:
    """Embedders by node; `embed` sends texts to them (see the module docstring)."""

    def __init__(
        self,
        spawn: Spawn,
        nodes: Callable[[], list[str]],
        *,
        max_embedders: int = 8,
        per_node: int = 1,
        chunk_texts: int = 64,
        refresh_s: float = 10.0,
        window_s: float = 0.05,
    ) -> None:
        self.spawn = spawn
        self.nodes = nodes
        self.max_embedders = max_embedders
        self.per_node = per_node
        self.chunk_texts = chunk_texts
        self.refresh_s = refresh_s
        self.members: dict[str, _Member] = {}
        self.batcher = MicroBatcher(window_s=window_s, max_batch=chunk_texts, max_in_flight=1)
        self._refreshed = -float("inf")
        self._lock = asyncio.Lock()
        self._turn = itertools.count()
        self._callers = itertools.count()
        # Chunks waiting for an embedder, by caller, in the order callers take turns.
        self._waiting: OrderedDict[int, deque[_Chunk]] = OrderedDict()
        self._running: set[asyncio.Future[None]] = set()
        self.dropped = 0  # chunks never sent because their caller had left

    async def refresh(self, *, force: bool = False) -> None:
        """`per_node` embedders per live node (up to max_embedders in all); the members of
        nodes that left are dropped. Members are keyed "node" (or "node/i" past the first)."""
        async with self._lock:
            now = time.monotonic()
            if not force and self.members and now - self._refreshed < self.refresh_s:
                return
            live = await asyncio.to_thread(self.nodes)
            sync_per_node(
                self.members,
                live,
                lambda node: _Member(self.spawn(node)),
                lambda member: member.handle.close(),
                per_node=self.per_node,
                limit=self.max_embedders,
                what="embedder",
            )
            self._refreshed = now
            self.batcher.max_in_flight = max(1, len(self.members))
        if not self.members:
            raise Unavailable("embedding: no live node to run an embedder on")
        self._dispatch()

    async def embed(self, name: str, texts: Sequence[str], deadline: float) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors of `texts` under embedding `name`."""
        await self.refresh()
        batch = np.empty(len(texts), dtype=object)
        batch[:] = list(texts)

        async def run(rows: np.ndarray, until: float) -> np.ndarray:
            return await self._run(name, rows.tolist(), until)

        out: np.ndarray = await self.batcher.submit(
            ("embed", name), batch, deadline, run, lambda r, start, n: r[start : start + n]
        )
        return out

    async def _run(self, name: str, texts: list[str], deadline: float) -> np.ndarray:
        """One caller's texts, in chunks that take their turn; when the caller leaves, its
        chunks not yet sent are dropped."""
        step = self.chunk_texts
        loop = asyncio.get_running_loop()
        chunks = [
            _Chunk(name, texts[i : i + step], deadline, loop.create_future())
            for i in range(0, len(texts), step)
        ]
        caller = next(self._callers)
        self._waiting[caller] = deque(chunks)
        self._dispatch()
        gathered = asyncio.gather(*(c.future for c in chunks))
        try:
            left = deadline - time.monotonic()
            parts = await asyncio.wait_for(gathered, max(left, 0.0))
        except TimeoutError:
            raise DeadlineExceeded(
                f"embedding: deadline exceeded embedding {len(texts)} texts"
            ) from None
        finally:
            # The chunks still queued are dropped here; while a leaving caller's futures were
            # being cancelled, a `_dispatch` may have skipped (and counted) some of them.
            queued = self._waiting.pop(caller, None)
            if queued:
                self.dropped += len(queued)
            for c in chunks:
                if not c.future.done():
                    c.future.cancel()
            if gathered.done() and not gathered.cancelled():
                gathered.exception()  # a leaving caller's CancelledError, read: no warning
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _dispatch(self) -> None:
        """Give every free embedder the next waiting chunk, callers in turn."""
        while self._waiting:
            free = [(k, m) for k, m in self.members.items() if m.busy == 0]
            if not free:
                return
            caller, queue = next(iter(self._waiting.items()))
            chunk = queue.popleft()
            if queue:
                self._waiting.move_to_end(caller)  # the next chunk is the next caller's
            else:
                del self._waiting[caller]
            if chunk.future.done():  # its caller left (its futures are cancelled)
                self.dropped += 1
                continue
            key, member = self._pick(free)
            member.busy += 1
            task = asyncio.ensure_future(self._send(key, member, chunk, caller))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _send(self, key: str, member: _Member, chunk: _Chunk, caller: int) -> None:
        retry = False
        try:
            left = chunk.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            got = await asyncio.wait_for(member.handle.embed(chunk.name, chunk.texts), left)
            if not chunk.future.done():
                chunk.future.set_result(got)
        except TimeoutError:
            if not chunk.future.done():
                chunk.future.set_exception(DeadlineExceeded(
                    f"embedding: deadline exceeded embedding {len(chunk.texts)} texts"))
        except _EmbedderLost as exc:
            log.warning("embedding: %s; trying another embedder", exc)
            if self.members.get(key) is member:
                del self.members[key]
                member.handle.close()
            chunk.tries += 1
            retry = chunk.tries < 3 and not chunk.future.done()
            if not retry and not chunk.future.done():
                chunk.future.set_exception(
                    Unavailable(f"embedding: three embedders failed; last: {exc}"))
        except Exception as exc:
            if not chunk.future.done():
                chunk.future.set_exception(exc)
        finally:
            member.busy -= 1
        if retry:
            self._waiting.setdefault(caller, deque()).appendleft(chunk)
            try:
                await self.refresh(force=True)
            except Unavailable as exc:
                if not chunk.future.done():
                    chunk.future.set_exception(exc)
        self._dispatch()

    def _pick(self, items: list[tuple[str, _Member]]) -> tuple[str, _Member]:
        """One of `items`, least busy first; ties go round the pool."""
        turn = next(self._turn)
        return min(
            items, key=lambda kv: (kv[1].busy, (items.index(kv) - turn) % len(items))
        )

    async def describe(self) -> list[dict[str, Any]]:
        """Each embedder that answers: its key, calls in flight, pid and what it has embedded.
        One that cannot be reached (its node just left) is left out; the next refresh drops it
        from the pool."""
        items = list(self.members.items())
        found = await asyncio.gather(
            *(m.handle.describe() for _, m in items), return_exceptions=True
        )
        out: list[dict[str, Any]] = []
        for (k, m), d in zip(items, found, strict=True):
            if isinstance(d, BaseException):
                if not isinstance(d, Exception):
                    raise d
                log.warning("embedder %s did not answer describe: %s", k, d)
                continue
            out.append({"key": k, "busy": m.busy, **d})
        return out

    def close(self) -> None:
        for member in self.members.values():
            member.handle.close()
        self.members.clear()


def local_pool(embedders: int = 1) -> EmbedderPool:
    """A pool of in-process embedders (tests, and the engine used without Ray)."""
    names = [f"local-{i}" for i in range(embedders)]
    return EmbedderPool(LocalEmbedder, lambda: names, max_embedders=embedders)


def ray_pool(settings: Any) -> EmbedderPool:
    """The pool of a coordinator on Ray: one embedder actor per live node."""
    from shardvec.coordinator.replicas.ray_control import alive_nodes

    def spawn(node: str) -> EmbedderHandle:
        return RayEmbedder(node, cpus=settings.embedder_cpus, threads=settings.embedder_threads)

    return EmbedderPool(
        spawn,
        alive_nodes,
        max_embedders=settings.max_embedders,
        per_node=settings.embedders_per_node,
        refresh_s=settings.embedder_refresh_s,
        window_s=settings.batch_window_s,
    )
