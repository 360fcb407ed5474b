"""The public server's interceptor: authentication, error mapping, and per-RPC accounting.

Every ShardvecError becomes its status code with its message; anything else is a bug,
logged with its traceback and reported as INTERNAL, and the server keeps serving.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from shard.errors import PermissionDenied, ShardvecError, Unauthenticated

log = logging.getLogger(__name__)

API_KEY_HEADER = "x-api-key"
Observer = Callable[[str, str, float], None]


class GuardInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(
        self,
        *,
        service_prefix: str,
        write_methods: frozenset[str],
        api_key: str = "",
        read_only_key: str = "",
        observe: Observer | None = None,
    ) -> None:
        self._prefix = service_prefix
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

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        full = details.method or ""
        if handler is None or handler.unary_unary is None or not full.startswith(self._prefix):
            return handler
        method = full.rsplit("/", 1)[-1]
        supplied = ""
        for key, value in details.invocation_metadata or ():
            if key == API_KEY_HEADER:
                supplied = str(value)
        inner = handler.unary_unary
        observe = self._observe

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = time.perf_counter()
            code = "OK"
            try:
                self._check_key(method, supplied)
                return await inner(request, context)
            except ShardvecError as exc:
                code = exc.code.name
                if exc.code in (
                    grpc.StatusCode.INVALID_ARGUMENT,
                    grpc.StatusCode.NOT_FOUND,
                    grpc.StatusCode.ALREADY_EXISTS,
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    grpc.StatusCode.UNAUTHENTICATED,
                    grpc.StatusCode.PERMISSION_DENIED,
                ):
                    log.info("rejected %s: %s %s", method, code, exc.message)
                else:
                    log.warning("failed %s: %s %s", method, code, exc.message)
                await context.abort(exc.code, exc.message)
            except grpc.aio.AbortError:
                code = "ABORTED"
                raise
            except Exception as exc:
                code = "INTERNAL"
                log.exception("%s failed", method)
                await context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
            finally:
                if observe is not None:
                    observe(method, code, time.perf_counter() - start)

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
