"""The context of each call, its metrics and its log line.

`CallObserver` is the outermost interceptor: for every call it binds a
`Call` (method, peer, a call id; the user id once authenticated) to a
context variable, so that every log line written while the call runs (the
errors interceptor's "unexpected error" lines included) carries them; it
counts the call in the gRPC metrics and, when it ends, writes one line with
its status code and duration. Authentication writes the caller's id into
the call (`note_caller`).

Each method keeps its shape (unary or streaming, coroutine or async
generator): see interception.py for why that matters.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from atomchat_server.interception import Context, WrappedOnce
from atomchat_server.observability import metrics
from atomchat_server.observability.call_context import Call, bind, unbind

log = logging.getLogger("atomchat.calls")

_GRPC_TYPES = {
    (False, False): "UNARY",
    (False, True): "SERVER_STREAM",
    (True, False): "CLIENT_STREAM",
    (True, True): "BIDI_STREAM",
}
_HANDLER_ATTRIBUTES = {
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}
# Health checks come every few seconds from orchestrators: their lines are DEBUG.
QUIET_PREFIXES = ("/grpc.health.", "/grpc.reflection.")


@dataclass(slots=True)
class _Series:
    """One method's metric children, bound once."""

    labels: tuple[str, str, str]
    started: Any
    seconds: Any
    handled: dict[grpc.StatusCode, Any]
    level: int
    is_login: bool

    def handled_with(self, code: grpc.StatusCode) -> Any:
        child = self.handled.get(code)
        if child is None:
            child = self.handled[code] = metrics.GRPC_HANDLED.labels(*self.labels, code.name)
        return child


def _series_for(method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> _Series:
    service, _, name = method.lstrip("/").rpartition("/")
    kind = _GRPC_TYPES[(handler.request_streaming, handler.response_streaming)]
    labels = (kind, service, name)
    return _Series(
        labels=labels,
        started=metrics.GRPC_STARTED.labels(*labels),
        seconds=metrics.GRPC_HANDLING_SECONDS.labels(*labels),
        handled={},
        level=logging.DEBUG if method.startswith(QUIET_PREFIXES) else logging.INFO,
        is_login=method == metrics.LOGIN_METHOD,
    )


def _code_of(context: Context, failure: BaseException | None) -> grpc.StatusCode:
    if isinstance(failure, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if failure is not None and not isinstance(failure, grpc.aio.AbortError):
        return grpc.StatusCode.UNKNOWN
    return grpc.StatusCode.OK


class CallObserver(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        self._series: dict[str, _Series] = {}
        self._wrapped = WrappedOnce(self._observed)

    async def intercept_service(
        self, continuation: Any, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler: grpc.RpcMethodHandler[Any, Any] | None = await continuation(handler_call_details)
        if handler is None:
            return handler  # type: ignore[return-value]
        return self._wrapped(handler_call_details.method, handler)

    def _observed(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        series = self._series.get(method)
        if series is None:
            series = self._series[method] = _series_for(method, handler)
        return _wrap(handler, method, series)


def _wrap(
    handler: grpc.RpcMethodHandler[Any, Any], method: str, series: _Series
) -> grpc.RpcMethodHandler[Any, Any]:
    attribute, factory = _HANDLER_ATTRIBUTES[
        (handler.request_streaming, handler.response_streaming)
    ]
    behaviour: Callable[..., Any] = getattr(handler, attribute)

    def begin(context: Context) -> tuple[Call, Any, float]:
        call = Call(method=method, peer=context.peer())
        token = bind(call)
        series.started.inc()
        return call, token, time.perf_counter()

    def end(context: Context, token: Any, started: float, failure: BaseException | None) -> None:
        seconds = time.perf_counter() - started
        code = _code_of(context, failure)
        series.handled_with(code).inc()
        series.seconds.observe(seconds)
        if series.is_login:
            metrics.count_login(code.name)
        if log.isEnabledFor(series.level):
            log.log(
                series.level,
                "%s %s in %.1f ms",
                method,
                code.name,
                seconds * 1000,
                extra={"grpc_code": code.name, "duration_seconds": round(seconds, 6)},
            )
        unbind(token)

    if inspect.isasyncgenfunction(behaviour):

        async def streamed(request: Any, context: Context) -> AsyncIterator[Any]:
            _, token, started = begin(context)
            failure: BaseException | None = None
            try:
                async for response in behaviour(request, context):
                    yield response
            except BaseException as exc:
                failure = exc
                raise
            finally:
                end(context, token, started, failure)

        wrapped: Callable[..., Any] = streamed
    else:

        async def awaited(request: Any, context: Context) -> Any:
            _, token, started = begin(context)
            failure: BaseException | None = None
            try:
                return await behaviour(request, context)
            except BaseException as exc:
                failure = exc
                raise
            finally:
                end(context, token, started, failure)

        wrapped = awaited
    return factory(
        wrapped,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
