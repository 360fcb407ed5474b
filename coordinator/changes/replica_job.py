"""A replica-count change running in the background for the coordinator's runtime."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from shardvec.contract.errors import FailedPrecondition
from shardvec.coordinator.collection import CollectionRuntime
from shardvec.coordinator.layout import ChangeProgress
from shardvec.coordinator.replicas import events

if TYPE_CHECKING:
    from shardvec.coordinator.changes.resharding import ReshardHost


class ReplicaJob:
    """A replica-count change running in the background (ReshardHost.scale_replicas
    persists its own steps); it cannot be aborted, since no step of it loses a replica."""

    def __init__(self, runtime: ReshardHost, col: CollectionRuntime, replicas: int):
        self.col = col
        self.done = asyncio.Event()
        self.error: BaseException | None = None
        col.change = ChangeProgress("replicas", "adding" if replicas > col.spec.replicas
                                    else "removing", col.layout.shards, replicas)
        self.task: asyncio.Task[None] | None = asyncio.ensure_future(
            self._run(runtime, col.spec.name, replicas)
        )

    async def _run(self, runtime: ReshardHost, name: str, replicas: int) -> None:
        try:
            await runtime.scale_replicas(name, replicas)
            self.col.change = None
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.error = exc
            events.needs_action(f"collection {name}", f"its replica change stopped: {exc}",
                                exc_info=True)
            if self.col.change is not None:
                self.col.change.error = str(exc)
        finally:
            self.done.set()

    async def abort(self) -> None:
        events.refused(f"an abort of the replica change of {self.col.spec.name}",
                       "a replica-count change cannot be aborted")
        raise FailedPrecondition(
            f"collection {self.col.spec.name!r}: a replica-count change cannot be aborted; "
            "scale again to the count you want once it is done"
        )


def replica_job(runtime: ReshardHost, col: CollectionRuntime, replicas: int) -> ReplicaJob:
    return ReplicaJob(runtime, col, replicas)
