"""Stand-ins for what gRPC hands a servicer, for tests that call a service in process."""

from __future__ import annotations

from typing import Any

from shardvec.contract.limits import API_KEY_HEADER
from shardvec.v1 import vector_search_pb2 as pb


class FakeContext:
    """The part of a grpc.aio servicer context the services read: the time left to the call's
    deadline, its metadata (the API key, when `key` is given) and whether it is active."""

    def __init__(self, time_remaining: float = 30.0, key: str | None = None) -> None:
        self._time_remaining = time_remaining
        self.key = key

    def time_remaining(self) -> float:
        return self._time_remaining

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((API_KEY_HEADER, self.key),) if self.key is not None else ()

    def is_active(self) -> bool:
        return True


class ReadsOnlyLink:
    """What a FrontService needs of its front for reads (coordinator/fronts/service.py
    FrontLink): pushes come in process, so a pull has nothing to fetch, and no read may be
    forwarded to the coordinator."""

    async def pull(self) -> None:
        return None

    async def coordinator_stub(self) -> Any:
        raise AssertionError("a read must not be forwarded to the coordinator")

    def cursor_secret(self) -> bytes:
        return b"k" * 32

    async def cluster_info(self) -> Any:
        return pb.ClusterInfoResponse()
