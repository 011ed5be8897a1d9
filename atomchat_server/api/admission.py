"""Admission: how many streams open at once, and what a burst beyond that gets.

Opening a stream (ChatStream, Subscribe, StreamInbox) costs this process a few
milliseconds of its event loop and a few round trips to PostgreSQL
(authentication, the channel and its last seq) until its first frame goes
out. Thousands opened at once used to take all of it together: every other
call waited behind them (GetMe p99 from 10 ms to 1.5 s), and gRPC itself
shed some of them: calls the application has not taken yet wait in a
backlog of gRPC's core, which drops them at random once it holds more than
`grpc.server.max_pending_requests` (1000; all beyond the hard limit, 3000),
and a dropped call reaches its client as CANCELLED (or INTERNAL, when the
client was still writing), with nothing that says when to come back.

So the server takes every call off gRPC's backlog at once (app.py raises
those limits far above what it reaches), and this interceptor decides:

- at most `opening` streams are being opened at a time; a stream counts
  until it has written its first frame (`joined`, or an event) or its
  headers (an inbox), or ended;
- the others wait for their turn, in order of arrival; waiting costs
  nothing but the call itself;
- a stream that would be the `waiting + 1`-th in line, or that has waited
  `wait_seconds` (the bound a call answers within), is refused with
  UNAVAILABLE "Server is busy, try again" and RetryInfo (api/status.py).

Unary calls are never held here. What they still wait for beside a burst
is gRPC's own accept loop, which takes one call per turn of the event loop
(bench/README.md, "Burst, idle streams and the soak").
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import grpc

from atomchat_server.domain import errors
from atomchat_server.interception import (
    Behaviour,
    Context,
    Handler,
    WrappedOnce,
    is_own_method,
    wrap_handler,
)

OPENING = 2
WAITING = 10_000


class Admission:
    """At most `opening` holders at once; up to `waiting` more wait in order, each at most
    `wait_seconds`; beyond that, `enter` raises UNAVAILABLE (server busy)."""

    def __init__(self, *, opening: int, waiting: int, wait_seconds: float) -> None:
        self._free = opening
        self._waiting_limit = waiting
        self._wait_seconds = wait_seconds
        # Turns in order of arrival; those given up on stay (cancelled) until `leave` skips them.
        self._queue: deque[asyncio.Future[None]] = deque()
        self.waiting = 0
        self.refused = 0

    async def enter(self) -> None:
        """Return once it is this caller's turn; then `leave` exactly once."""
        if self._free > 0:
            self._free -= 1
            return
        if self.waiting >= self._waiting_limit:
            self.refused += 1
            raise errors.server_busy()
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(turn)
        self.waiting += 1
        try:
            async with asyncio.timeout(self._wait_seconds):
                await turn
        except BaseException as exc:
            if turn.done() and not turn.cancelled():
                # The turn came just as the wait ended: pass it on.
                self.leave()
            else:
                turn.cancel()
                self.waiting -= 1
            if isinstance(exc, TimeoutError):
                self.refused += 1
                raise errors.server_busy() from None
            raise

    def leave(self) -> None:
        """Hand the turn to the first caller still waiting, or free it."""
        while self._queue:
            turn = self._queue.popleft()
            if not turn.done():
                self.waiting -= 1
                turn.set_result(None)
                return
        self._free += 1


class _Opening:
    """A call's context that tells `opened` when the first frame is written (or the
    headers are sent: an inbox says it is live that way); later writes go to the
    call's own `write`, with nothing in between."""

    def __init__(self, context: Context, opened: Callable[[], None]) -> None:
        self._context = context
        self._opened = opened

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def write(self, message: Any) -> None:
        self.__dict__["write"] = self._context.write
        self._opened()
        await self._context.write(message)

    async def send_initial_metadata(self, metadata: Any) -> None:
        self._opened()
        await self._context.send_initial_metadata(metadata)


class _Replayed:
    """A stream's requests with the first, already read, put back in front.

    Once the first has been taken, iterating again goes straight to the
    rest: `async for` over what is left adds no layer per request.
    """

    __slots__ = ("_first", "_pending", "_rest")

    def __init__(self, first: Any, rest: AsyncIterator[Any]) -> None:
        self._first = first
        self._pending = True
        self._rest = rest

    def __aiter__(self) -> AsyncIterator[Any]:
        return self if self._pending else self._rest

    async def __anext__(self) -> Any:
        if self._pending:
            self._pending = False
            first, self._first = self._first, None
            return first
        return await anext(self._rest)


class AdmissionInterceptor(grpc.aio.ServerInterceptor):
    """Holds the project's streaming-response calls in `admission` until they are open.

    A call that also streams requests is let in once its first request (the
    `join`) has arrived: a client that opens a stream and says nothing holds
    no one up.
    """

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._wrapped = WrappedOnce(self._wrap)

    def _wrap(self, method: str, handler: Handler) -> Handler:
        return wrap_handler(
            handler, functools.partial(self._admitted, after_first=handler.request_streaming)
        )

    async def intercept_service(
        self, continuation: Any, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler: grpc.RpcMethodHandler[Any, Any] = await continuation(handler_call_details)
        if (
            handler is None
            or not handler.response_streaming
            or not is_own_method(handler_call_details.method)
        ):
            return handler
        return self._wrapped(handler_call_details.method, handler)

    async def _admitted(
        self, behaviour: Behaviour, request: Any, context: Context, *, after_first: bool
    ) -> Any:
        if after_first:
            try:
                first = await anext(request)
            except StopAsyncIteration:
                return await behaviour(request, context)
            request = _Replayed(first, request)
        admission = self._admission
        await admission.enter()
        holding = True

        def opened() -> None:
            nonlocal holding
            if holding:
                holding = False
                admission.leave()

        try:
            return await behaviour(request, cast(Context, _Opening(context, opened)))
        finally:
            opened()
