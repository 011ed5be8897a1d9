"""Who is calling: one interceptor authenticates every call but Register and Login.

The bearer token names a user; the user is then looked up through a cache,
so a blocked user's tokens stop working on their next call. The cache
forgets a user whenever they are blocked or unblocked in any process (the
event router tells it), forgets everyone when this process may have missed
such news (the bus reconnected), and never trusts an entry older than its
age limit, as a second line of defence. The caller is available to
servicers as `current_actor()`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any

import grpc

from atomchat_server.auth.tokens import Tokens
from atomchat_server.db.engine import Database
from atomchat_server.domain import errors, users
from atomchat_server.domain.entities import Actor
from atomchat_server.interception import (
    Behaviour,
    Context,
    WrappedOnce,
    is_own_method,
    wrap_handler,
)

PUBLIC_METHODS = frozenset({"/atomchat.v1.UserService/Register", "/atomchat.v1.UserService/Login"})
CACHE_LIMIT = 50_000

_actor: ContextVar[Actor] = ContextVar("atomchat_actor")


def current_actor() -> Actor:
    """The authenticated caller of the current call."""
    return _actor.get()


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    raise errors.Unauthenticated(
        "Missing bearer token: send 'authorization: Bearer <token>'",
        reason=errors.Reason.MISSING_TOKEN,
    )


class Authenticator:
    """Tokens to actors, with a cache of who is active and in which role."""

    def __init__(
        self,
        tokens: Tokens,
        database: Database,
        *,
        max_age: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tokens = tokens
        self._database = database
        self._max_age = max_age
        self._clock = clock
        # user id -> (when it was read, the user or None for "unknown or blocked").
        self._cache: dict[int, tuple[float, users.ActiveUser | None]] = {}
        # Bumped by every forget: a lookup that raced with one is not cached.
        self._generation = 0

    async def actor(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Actor:
        token = self._tokens.verify(bearer_token(metadata))
        cached = self._cache.get(token.user_id)
        if cached is not None and self._clock() - cached[0] < self._max_age:
            user = cached[1]
        else:
            user = await self._load(token.user_id)
        if user is None or not user.accepts_token_issued_at(token.issued_at):
            raise errors.invalid_credentials()
        return user.actor

    async def _load(self, user_id: int) -> users.ActiveUser | None:
        generation = self._generation
        read_at = self._clock()
        async with self._database.transaction() as session:
            user = await users.find_active_user(session, user_id=user_id)
        if generation == self._generation:
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            self._cache[user_id] = (read_at, user)
        return user

    def forget(self, user_id: int) -> None:
        self._generation += 1
        self._cache.pop(user_id, None)

    def forget_everyone(self) -> None:
        self._generation += 1
        self._cache.clear()


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every call of the project's own methods but the public ones;
    `on_caller` is told of each caller (the call's log line names them)."""

    def __init__(
        self, authenticator: Authenticator, on_caller: Callable[[Actor], None] = lambda _: None
    ) -> None:
        self._authenticator = authenticator
        self._on_caller = on_caller
        self._wrapped = WrappedOnce(lambda _, handler: wrap_handler(handler, self._authenticated))

    async def intercept_service(
        self,
        continuation: Any,
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler: grpc.RpcMethodHandler[Any, Any] = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not is_own_method(method) or method in PUBLIC_METHODS:
            return handler
        return self._wrapped(method, handler)

    async def _authenticated(self, behaviour: Behaviour, request: Any, context: Context) -> Any:
        actor = await self._authenticator.actor(context.invocation_metadata())
        self._on_caller(actor)
        token = _actor.set(actor)
        try:
            return await behaviour(request, context)
        finally:
            _actor.reset(token)
