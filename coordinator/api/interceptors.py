"""The public server's interceptor: authentication, error mapping, and per-RPC accounting.

Every RPC of the guarded service, unary or streaming, passes the key check first, on the call's
metadata alone: a call without the right key is refused before gRPC reads its message (the
handler it gets is request-streaming and never pulls the request), so unauthenticated callers
cannot make the server buffer or decode large messages. Requests are decoded here, so a
message protobuf cannot parse is INVALID_ARGUMENT naming the field. Every
ShardvecError becomes its status code with its message; anything else is a bug, logged with
its traceback and reported as INTERNAL, and the server keeps serving.
"""

from __future__ import annotations

import hmac
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor

from shardvec.contract.errors import PermissionDenied, ShardvecError, Unauthenticated
from shardvec.contract.limits import API_KEY_HEADER
from shardvec.coordinator.api.decoding import decode_request
from shardvec.coordinator.replicas import events

log = logging.getLogger(__name__)

Observer = Callable[[str, str, float], None]
_CLIENT_ERRORS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    }
)
_KINDS = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


class GuardInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(
        self,
        *,
        service_prefix: str,
        write_methods: frozenset[str],
        api_key: str = "",
        read_only_key: str = "",
        observe: Observer | None = None,
        request_types: Mapping[str, Descriptor] | None = None,
    ) -> None:
        self._prefix = service_prefix
        self._inputs = dict(request_types or {})  # method name -> request message descriptor
        self._writes = write_methods
        self._api_key = api_key.encode()
        self._ro_key = read_only_key.encode()
        self._observe = observe

    def _check_key(self, method: str, supplied: str) -> None:
        if not self._api_key:
            return
        given = supplied.encode()
        if hmac.compare_digest(given, self._api_key):
            return
        if self._ro_key and hmac.compare_digest(given, self._ro_key):
            if method in self._writes:
                raise PermissionDenied(f"{method}: the read-only key may not write")
            return
        raise Unauthenticated(f"{method}: missing or invalid API key (metadata {API_KEY_HEADER})")

    async def _abort(self, method: str, exc: Exception, context: Any) -> str:
        """End the call with `exc`'s status (context.abort raises); returns the code's name."""
        if isinstance(exc, ShardvecError):
            code = str(exc.code.name)
            fields = {"method": method, "code": code, "reason": exc.message}
            if events.already_logged(exc):
                pass  # one line per refusal, at the operating log's level
            elif exc.code in _CLIENT_ERRORS:
                log.info("rejected %s: %s %s", method, code, exc.message, extra=fields)
            else:
                log.warning("failed %s: %s %s", method, code, exc.message, extra=fields)
            await context.abort(exc.code, exc.message)
            return code
        if isinstance(exc, NotImplementedError):
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented")
            return "UNIMPLEMENTED"
        log.exception("%s failed", method)
        await context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
        return "INTERNAL"

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        full = details.method or ""
        if handler is None or not full.startswith(self._prefix):
            return handler
        method = full.rsplit("/", 1)[-1]
        supplied = ""
        for key, value in details.invocation_metadata or ():
            if key == API_KEY_HEADER:
                supplied = str(value)
        kind = next((k for k in _KINDS if getattr(handler, k) is not None), None)
        if kind is None:
            return handler
        try:
            self._check_key(method, supplied)
        except ShardvecError as exc:
            return self._refusal(kind, method, exc, handler)
        inner = getattr(handler, kind)
        deserialize = handler.request_deserializer
        descriptor = self._inputs.get(method)

        def decode(raw: bytes) -> Any:
            return decode_request(deserialize, raw, descriptor)

        def request_of(raw: Any) -> Any:
            if kind.startswith("stream_"):
                return _decoded(raw, decode)
            return decode(raw)

        if kind.endswith("_unary"):

            async def guarded(raw: Any, context: grpc.aio.ServicerContext) -> Any:
                start = time.perf_counter()
                code = "OK"
                try:
                    return await inner(request_of(raw), context)
                except grpc.aio.AbortError:
                    code = "ABORTED"
                    raise
                except Exception as exc:
                    code = _code_name(exc)
                    await self._abort(method, exc, context)
                finally:
                    self._account(method, code, start)

            wrapped: Any = guarded
        else:

            async def guarded_stream(
                raw: Any, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                start = time.perf_counter()
                code = "OK"
                try:
                    result = inner(request_of(raw), context)
                    if inspect.isasyncgen(result):
                        async for item in result:
                            yield item
                    else:  # a handler that writes with context.write
                        await result
                except grpc.aio.AbortError:
                    code = "ABORTED"
                    raise
                except Exception as exc:
                    code = _code_name(exc)
                    await self._abort(method, exc, context)
                finally:
                    self._account(method, code, start)

            wrapped = guarded_stream
        return _KINDS[kind](
            wrapped,
            request_deserializer=None,  # raw bytes: decoded in the guard, errors mapped
            response_serializer=handler.response_serializer,
        )

    def _refusal(
        self, kind: str, method: str, exc: ShardvecError, handler: grpc.RpcMethodHandler
    ) -> grpc.RpcMethodHandler:
        """A handler that ends the call with `exc` without reading its request: gRPC reads a
        unary request before calling its handler, a request stream only when it is pulled."""

        async def refuse(_requests: Any, context: grpc.aio.ServicerContext) -> Any:
            start = time.perf_counter()
            try:
                await self._abort(method, exc, context)
            finally:
                self._account(method, str(exc.code.name), start)

        if kind.endswith("_unary"):
            return grpc.stream_unary_rpc_method_handler(
                refuse, request_deserializer=None, response_serializer=handler.response_serializer
            )

        async def refuse_stream(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            await refuse(requests, context)
            yield  # never reached: abort raises; makes this an async generator

        return grpc.stream_stream_rpc_method_handler(
            refuse_stream,
            request_deserializer=None,
            response_serializer=handler.response_serializer,
        )

    def _account(self, method: str, code: str, start: float) -> None:
        if self._observe is not None:
            self._observe(method, code, time.perf_counter() - start)


async def _decoded(raw: AsyncIterator[bytes], decode: Callable[[bytes], Any]) -> AsyncIterator[Any]:
    async for item in raw:
        yield decode(item)


def _code_name(exc: Exception) -> str:
    """The status an exception leaves as (see GuardInterceptor._abort)."""
    if isinstance(exc, ShardvecError):
        return str(exc.code.name)
    if isinstance(exc, NotImplementedError):
        return "UNIMPLEMENTED"
    return "INTERNAL"
