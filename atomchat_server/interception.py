"""Wrapping a gRPC method handler's behaviour without changing its shape.

An aio interceptor that returned a unary handler for every method would
break the streaming ones; `wrap_handler` keeps each method's kind (unary or
streaming request, unary or streaming response) and its serializers. The
behaviours it wraps are coroutines (streaming responses are written with
`context.write`), so one `around` sees the whole call, errors included.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc

Context = grpc.aio.ServicerContext[Any, Any]
Behaviour = Callable[[Any, Context], Awaitable[Any]]
# Runs around one call: around(behaviour, request, context) -> the behaviour's result.
Around = Callable[[Behaviour, Any, Context], Awaitable[Any]]

_KINDS = {
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}


Deserializer = Callable[[bytes], Any]


def wrap_handler(
    handler: grpc.RpcMethodHandler[Any, Any],
    around: Around,
    *,
    deserializer: Callable[[Deserializer | None], Deserializer | None] | None = None,
) -> grpc.RpcMethodHandler[Any, Any]:
    """The handler with `around` wrapped around its behaviour (and, when given,
    its request deserializer replaced by `deserializer(the handler's own)`)."""
    attribute, factory = _KINDS[(handler.request_streaming, handler.response_streaming)]
    behaviour: Behaviour = getattr(handler, attribute)
    if not inspect.iscoroutinefunction(behaviour):
        raise TypeError(f"{behaviour!r} must be a coroutine function to be wrapped")

    # A partial, not a coroutine that awaits `around`: a call's coroutine is then
    # around's own, one frame fewer per layer for as long as the call lasts.
    wrapped = functools.partial(around, behaviour)
    request_deserializer = handler.request_deserializer
    if deserializer is not None:
        request_deserializer = deserializer(request_deserializer)
    return factory(
        wrapped,
        request_deserializer=request_deserializer,
        response_serializer=handler.response_serializer,
    )


Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


class WrappedOnce:
    """Each method's handler wrapped once (by `wrap(method, handler)`), not once per call.

    gRPC asks the interceptors for a handler on every call and keeps what they
    return for as long as the call lasts: a wrapper made per call costs every
    open stream its own handler, partials and closures. Wrapping depends on the
    handler alone, and the handler gRPC finds for a method is the same object
    every time, so the wrapper made for it is reused while that holds.
    """

    def __init__(self, wrap: Callable[[str, Handler], Handler]) -> None:
        self._wrap = wrap
        # method -> (the handler wrapped, its wrapper). Only methods gRPC has a
        # handler for get here, so this holds one entry per registered method.
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    def __call__(self, method: str, handler: Handler) -> Handler:
        found = self._wrapped.get(method)
        if found is not None and found[0] is handler:
            return found[1]
        wrapper = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapper)
        return wrapper


def is_own_method(method: str) -> bool:
    """The project's own services, as opposed to health checking and reflection."""
    return method.startswith("/atomchat.v1.")
