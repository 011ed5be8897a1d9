"""Interceptors wrap each method's handler once: gRPC asks them on every call and
keeps what they return for the call's whole life, so a wrapper made per call
would cost every open stream its own (interception.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import grpc

from atomchat_server.api.admission import Admission, AdmissionInterceptor
from atomchat_server.api.status import ErrorInterceptor
from atomchat_server.auth.interceptor import Authenticator, AuthInterceptor
from atomchat_server.interception import Handler, WrappedOnce
from atomchat_server.observability.calls import CallObserver

CHAT_STREAM = "/atomchat.v1.ChatService/ChatStream"
GET_ME = "/atomchat.v1.UserService/GetMe"


async def _stream(requests: Any, context: Any) -> None:
    return None


async def _unary(request: Any, context: Any) -> None:
    return None


HANDLERS: dict[str, Handler] = {
    CHAT_STREAM: grpc.stream_stream_rpc_method_handler(_stream),
    GET_ME: grpc.unary_unary_rpc_method_handler(_unary),
}


class _Details(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


async def _handler_for(
    interceptors: Sequence[grpc.aio.ServerInterceptor], method: str, handlers: dict[str, Handler]
) -> Handler:
    """What gRPC gets for a call: the interceptors in turn, the service's handler last."""

    def continuation(at: int) -> Callable[[grpc.HandlerCallDetails], Awaitable[Handler]]:
        async def next_one(details: grpc.HandlerCallDetails) -> Handler:
            if at == len(interceptors):
                return handlers[details.method]
            return cast(
                Handler, await interceptors[at].intercept_service(continuation(at + 1), details)
            )

        return next_one

    return await continuation(0)(_Details(method))


def _server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """The server's chain (app.py), in its order."""
    return [
        CallObserver(),
        ErrorInterceptor(),
        AdmissionInterceptor(Admission(opening=2, waiting=10, wait_seconds=1.0)),
        AuthInterceptor(cast(Authenticator, None)),
    ]


async def test_every_call_of_a_method_gets_the_same_wrapped_handler() -> None:
    interceptors = _server_interceptors()
    for method in (CHAT_STREAM, GET_ME):
        first = await _handler_for(interceptors, method, HANDLERS)
        again = await _handler_for(interceptors, method, HANDLERS)
        assert again is first
        assert first is not HANDLERS[method]
        assert (first.request_streaming, first.response_streaming) == (
            HANDLERS[method].request_streaming,
            HANDLERS[method].response_streaming,
        )
    stream = await _handler_for(interceptors, CHAT_STREAM, HANDLERS)
    unary = await _handler_for(interceptors, GET_ME, HANDLERS)
    assert stream is not unary


async def test_a_method_whose_handler_changed_is_wrapped_anew() -> None:
    interceptors = _server_interceptors()
    before = await _handler_for(interceptors, GET_ME, HANDLERS)
    replaced = {**HANDLERS, GET_ME: grpc.unary_unary_rpc_method_handler(_unary)}
    after = await _handler_for(interceptors, GET_ME, replaced)
    assert after is not before
    assert await _handler_for(interceptors, GET_ME, replaced) is after


def test_wrapped_once_wraps_a_handler_once_per_method() -> None:
    wrapped: list[tuple[str, Handler]] = []

    def wrap(method: str, handler: Handler) -> Handler:
        wrapped.append((method, handler))
        return grpc.unary_unary_rpc_method_handler(_unary)

    once = WrappedOnce(wrap)
    handler = HANDLERS[GET_ME]
    assert once(GET_ME, handler) is once(GET_ME, handler)
    assert once(CHAT_STREAM, handler) is not once(GET_ME, handler)
    assert wrapped == [(GET_ME, handler), (CHAT_STREAM, handler)]
