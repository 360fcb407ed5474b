"""The public API as a front serves it: reads over the pushed views (a stale view pulled again
and the call retried within its deadline), writes forwarded to the coordinator as they came."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import grpc

from shardvec.contract.errors import (
    DeadlineExceeded,
    NotFound,
    StaleLayout,
    Unavailable,
    error_for_status,
)
from shardvec.coordinator.api.read_service import ReadService
from shardvec.coordinator.api.service import WRITE_METHODS
from shardvec.coordinator.config import CoordinatorSettings
from shardvec.coordinator.embedding.pool import EmbedderPool
from shardvec.coordinator.fronts.runtime import FrontRuntime
from shardvec.coordinator.queries.batching import MicroBatcher
from shardvec.coordinator.queries.reads import CollectionReads

log = logging.getLogger(__name__)



class FrontLink(Protocol):
    """What the service needs of its front (coordinator/fronts/actor.py): fresh views from
    the coordinator, a stub of the coordinator's public API to forward writes to, the scroll
    cursors' key and the cluster's listing."""

    async def pull(self) -> None: ...

    async def coordinator_stub(self) -> Any: ...

    def cursor_secret(self) -> bytes: ...

    async def cluster_info(self) -> Any: ...

PULL_BACKOFF_S = 0.05  # between a stale read's pull and its retry, doubling


Pull = Callable[[], Awaitable[dict[str, Any]]]


class FrontService(ReadService):
    """The public API on a front: reads over the pushed layout (a stale one pulled again and
    the call retried within its deadline), writes forwarded to the coordinator."""

    def __init__(
        self,
        front: FrontLink,
        runtime: FrontRuntime,
        settings: CoordinatorSettings,
        batcher: MicroBatcher,
        *,
        embedders: EmbedderPool | None = None,
    ) -> None:
        super().__init__(
            runtime,
            settings,
            batcher,
            embedders=embedders,
            cursor_secret=front.cursor_secret,
            cluster_info=front.cluster_info,
        )
        self.front = front
        self.front_runtime = runtime

    async def _refresh_replicas(self, col: CollectionReads) -> None:
        return None  # a front's replica figures are those of the last view

    async def _fenced(self, handler: Callable[..., Awaitable[Any]], request: Any,
                      context: Any) -> Any:  # fmt: skip
        """Run read `handler`; on a stale layout (or no replica left in the view), pull the
        views again and retry, until the call's deadline."""
        deadline = self._deadline(context)
        delay = PULL_BACKOFF_S
        unknown_pulled = False
        while True:
            try:
                return await handler(request, context)
            except NotFound:
                # Created while this front's pushes were lost: a pull tells.
                if unknown_pulled:
                    raise
                unknown_pulled = True
                await self.front.pull()
            except (StaleLayout, Unavailable) as exc:
                if time.monotonic() + delay >= deadline:
                    if isinstance(exc, StaleLayout):
                        raise DeadlineExceeded(
                            f"query front: the layout changed faster than it could follow: {exc}"
                        ) from None
                    raise
                log.info("query front: %s; pulling the layout again", exc)
                await self.front.pull()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def DescribeCollection(self, request: Any, context: Any) -> Any:
        # Status, not the data path: the coordinator's own figures, with the progress of a
        # layout change (coordinator/changes/resharding.py) that pushes do not carry.
        return await self._forward("DescribeCollection", request, context)

    async def Get(self, request: Any, context: Any) -> Any:
        return await self._fenced(super().Get, request, context)

    async def Count(self, request: Any, context: Any) -> Any:
        return await self._fenced(super().Count, request, context)

    async def Search(self, request: Any, context: Any) -> Any:
        return await self._fenced(super().Search, request, context)

    async def Scroll(self, request: Any, context: Any) -> Any:
        return await self._fenced(super().Scroll, request, context)

    async def Facet(self, request: Any, context: Any) -> Any:
        return await self._fenced(super().Facet, request, context)

    # Writes and collection changes: to the coordinator, as they came.

    def _forward_args(self, context: Any) -> dict[str, Any]:
        remaining = context.time_remaining()
        timeout = remaining if remaining is not None else self.settings.default_deadline_s
        metadata = tuple(
            (k, v) for k, v in (context.invocation_metadata() or ())
            if not k.startswith(("grpc-", ":")) and k not in ("user-agent", "content-type")
        )  # fmt: skip
        return {"timeout": timeout, "metadata": metadata}

    async def _forward(self, method: str, request: Any, context: Any) -> Any:
        stub = await self.front.coordinator_stub()
        try:
            return await getattr(stub, method)(request, **self._forward_args(context))
        except grpc.aio.AioRpcError as exc:
            raise error_for_status(exc.code(), exc.details() or "") from None

    async def CreateCollection(self, request: Any, context: Any) -> Any:
        return await self._forward("CreateCollection", request, context)

    async def DropCollection(self, request: Any, context: Any) -> Any:
        return await self._forward("DropCollection", request, context)

    async def Upsert(self, request: Any, context: Any) -> Any:
        return await self._forward("Upsert", request, context)

    async def Update(self, request: Any, context: Any) -> Any:
        return await self._forward("Update", request, context)

    async def Delete(self, request: Any, context: Any) -> Any:
        return await self._forward("Delete", request, context)

    async def ScaleCollection(self, request: Any, context: Any) -> Any:
        return await self._forward("ScaleCollection", request, context)

    async def Rebalance(self, request: Any, context: Any) -> Any:
        return await self._forward("Rebalance", request, context)

    async def SetCollectionOptions(self, request: Any, context: Any) -> Any:
        return await self._forward("SetCollectionOptions", request, context)

    async def CreateAlias(self, request: Any, context: Any) -> Any:
        return await self._forward("CreateAlias", request, context)

    async def SwitchAlias(self, request: Any, context: Any) -> Any:
        return await self._forward("SwitchAlias", request, context)

    async def DeleteAlias(self, request: Any, context: Any) -> Any:
        return await self._forward("DeleteAlias", request, context)

    async def CreateSnapshot(self, request: Any, context: Any) -> AsyncIterator[Any]:
        stub = await self.front.coordinator_stub()
        call = stub.CreateSnapshot(request, **self._forward_args(context))
        try:
            async for chunk in call:
                yield chunk
        except grpc.aio.AioRpcError as exc:
            raise error_for_status(exc.code(), exc.details() or "") from None

    async def RestoreSnapshot(self, request_iterator: Any, context: Any) -> Any:
        stub = await self.front.coordinator_stub()
        try:
            return await stub.RestoreSnapshot(request_iterator, **self._forward_args(context))
        except grpc.aio.AioRpcError as exc:
            raise error_for_status(exc.code(), exc.details() or "") from None


assert {
    "CreateCollection", "DropCollection", "Upsert", "Update", "Delete",
    "CreateSnapshot", "RestoreSnapshot", "ScaleCollection", "Rebalance", "SetCollectionOptions",
    "CreateAlias", "SwitchAlias", "DeleteAlias",
} == WRITE_METHODS  # fmt: skip  # every write is forwarded (FrontService above)
