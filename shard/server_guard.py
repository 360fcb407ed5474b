"""The shard service's one interceptor: every call must carry the cluster's internal token
(a call without it is refused UNAUTHENTICATED on its metadata alone, its message never
decoded), and a ShardvecError leaves as its own status code (shard/server.py)."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from shardvec.contract.errors import ShardvecError, Unauthenticated
from shardvec.contract.limits import TOKEN_HEADER

log = logging.getLogger(__name__)


class TokenGuard(grpc.ServerInterceptor):  # type: ignore[misc]
    """Checks the internal token and maps ShardvecError to its status code."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = continuation(details)
        if handler is None:
            return handler
        supplied = dict(details.invocation_metadata or ()).get(TOKEN_HEADER, "")
        authorized = hmac.compare_digest(self._token, str(supplied).encode())
        if not authorized:
            return refusal(handler)

        def check() -> None:
            if not authorized:
                raise Unauthenticated("shard service: missing or wrong internal token")

        def abort(context: grpc.ServicerContext, exc: Exception) -> None:
            if isinstance(exc, ShardvecError):
                context.abort(exc.code, exc.message)
            # a bug, not bad input: report it, keep serving
            log.exception("shard rpc %s failed", details.method)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")

        if handler.stream_stream is not None:
            inner_bidi = handler.stream_stream

            def guarded_bidi(
                requests: Iterator[Any], context: grpc.ServicerContext
            ) -> Iterator[Any]:
                try:
                    check()
                    yield from inner_bidi(requests, context)
                except Exception as exc:
                    abort(context, exc)

            return grpc.stream_stream_rpc_method_handler(
                guarded_bidi,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            def guarded_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                try:
                    check()
                    yield from inner_stream(request, context)
                except Exception as exc:
                    abort(context, exc)

            return grpc.unary_stream_rpc_method_handler(
                guarded_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        inner = handler.unary_unary
        if inner is None:  # stream-unary: shardvec has none; refuse rather than pass unchecked
            raise RuntimeError(f"shard rpc {details.method}: unsupported handler kind")

        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                check()
                return inner(request, context)
            except Exception as exc:
                abort(context, exc)

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def refusal(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler that ends a call without the internal token UNAUTHENTICATED, decided on its
    metadata alone: as a request-streaming handler that never pulls the request, so gRPC
    neither assembles nor decodes the message (a unary handler gets its request read first)."""
    message = "shard service: missing or wrong internal token"

    def refuse(_requests: Iterator[bytes], context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    def refuse_stream(_requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[Any]:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # never reached: abort raises; makes this a generator

    if handler.unary_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            refuse, request_deserializer=None, response_serializer=handler.response_serializer
        )
    return grpc.stream_stream_rpc_method_handler(
        refuse_stream, request_deserializer=None,
        response_serializer=handler.response_serializer,
    )
