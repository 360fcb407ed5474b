"""The exception tree of shardvec: one root, each subclass carries its gRPC status code.

Every layer raises these; one server interceptor turns them into statuses, and the client
turns statuses back into them, so callers catch the same class on both sides of the wire.
"""

from __future__ import annotations

import grpc


class ShardvecError(Exception):
    """Root of every error shardvec raises on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ShardvecError):
    """The request is malformed: wrong dimension, bad id, bad filter, out-of-range parameter."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ShardvecError):
    """An unknown collection (or other named object)."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ShardvecError):
    """Creating a collection that exists."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ShardvecError):
    """The system is not in a state to run the request (e.g. a replica behind in sequence)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class StaleLayout(ShardvecError):
    """A front read a replica under a layout epoch the replica no longer holds (query fronts:
    coordinator/fronts/): the front pulls a fresh layout and retries within the deadline.

    ABORTED, gRPC's code for a conflict a retry resolves, and the only error a replica answers
    with it: the status alone says what happened, whatever the message."""

    code = grpc.StatusCode.ABORTED


STALE_LAYOUT = "stale layout"  # how a StaleLayout's message starts, for people reading logs


class ResourceExhausted(ShardvecError):
    """A configured limit was exceeded (message size, batch size, query batch size)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ShardvecError):
    """No live replica can serve the request right now; retrying later may succeed."""

    code = grpc.StatusCode.UNAVAILABLE


class ReplicaDown(Unavailable):
    """A replica did not answer (process dead, restarting, unreachable, or closed in-process).

    Remote and in-process shards both raise it, so the replica rules treat them alike.
    """


class ReplicaFault(Unavailable):
    """A replica answered with an error of its own (INTERNAL, UNKNOWN: a bug on its side; or
    a refused internal token): it is serving, so nobody marks it dead, but this call may go
    to another replica."""


class DeadlineExceeded(ShardvecError):
    """The caller's deadline ran out before the work finished."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class DataLoss(ShardvecError):
    """Stored data is corrupt and cannot be recovered from this replica."""

    code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(ShardvecError):
    """No valid credentials were presented."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ShardvecError):
    """Valid credentials that do not allow this operation (e.g. a read-only key writing)."""

    code = grpc.StatusCode.PERMISSION_DENIED


_BY_CODE: dict[grpc.StatusCode, type[ShardvecError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        DataLoss,
        Unauthenticated,
        PermissionDenied,
        StaleLayout,
    )
}


def is_bad_request(exc: BaseException) -> bool:
    """True for errors caused by the request itself (every replica would say the same);
    DataLoss is one replica's damaged store, not the request's fault."""
    return isinstance(exc, ShardvecError) and not isinstance(
        exc, (ReplicaDown, DeadlineExceeded, DataLoss)
    )


def error_for_status(code: grpc.StatusCode, message: str) -> ShardvecError:
    """The exception matching a gRPC status (the client side of the interceptor); a status no
    class stands for (CANCELLED, UNKNOWN, ...) is the root class carrying that code."""
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls(message)
    err = ShardvecError(message or code.name)
    err.code = code
    return err
