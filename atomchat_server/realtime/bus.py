"""PostgreSQL LISTEN/NOTIFY between server processes.

One dedicated connection per process LISTENs on the events channel and hands
every decoded event from *other* processes to `on_event` (this process's own
events were dispatched right after their commit). If the connection drops,
the bus reconnects with backoff and then calls `on_reconnect`, which lets
the process catch up on whatever it may have missed, by seq. `reconnects`
counts the reconnections whose catch-up has run. Connecting, LISTEN and the
keepalive query are bounded (`timeouts`, db/timeouts.py), so a server that
stopped answering is noticed within two keepalive periods.

Ephemeral events (typing, presence), which change nothing stored, are
`send`: queued, and notified through the same connection in the order sent,
several in one statement. While the connection is down they are dropped;
whoever relies on them resynchronises on `on_reconnect`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from atomchat_server.db.errors import domain_error
from atomchat_server.db.timeouts import Timeouts, session_settings
from atomchat_server.domain import events
from atomchat_server.observability import metrics

log = logging.getLogger(__name__)

APPLICATION_NAME = "atomchat-listener"
_SEND = "SELECT count(pg_notify($1, payload)) FROM unnest($2::text[]) AS payload"


def _mark_lost(lost: asyncio.Future[None], _connection: object) -> None:
    if not lost.done():
        lost.set_result(None)


class Bus:
    def __init__(
        self,
        dsn: str,
        *,
        origin: str,
        on_event: Callable[[events.Event], None],
        on_reconnect: Callable[[], Awaitable[None]],
        keepalive_seconds: float = 5.0,
        timeouts: Timeouts | None = None,
    ) -> None:
        self._dsn = dsn
        self._timeouts = timeouts or Timeouts()
        self._origin = origin
        self._own = events.origin_prefix(origin)
        self._on_event = on_event
        self._on_reconnect = on_reconnect
        self._keepalive = keepalive_seconds
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._reconnected = asyncio.Condition()
        self.reconnects = 0
        self._outbox: list[str] = []
        self._outbox_ready = asyncio.Event()
        self._connected = False

    async def start(self) -> None:
        """Start listening; returns once the first LISTEN is in place."""
        self._task = asyncio.create_task(self._run(), name="event-bus")
        listening = asyncio.ensure_future(self._listening.wait())
        done, _ = await asyncio.wait({listening, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            listening.cancel()
            self._task.result()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_for_reconnects(self, count: int) -> None:
        """Wait until `count` reconnections (each with its catch-up) have completed."""
        async with self._reconnected:
            await self._reconnected.wait_for(lambda: self.reconnects >= count)

    def send(self, event: events.Event) -> None:
        """Notify the other processes of an event that is not part of a transaction."""
        if not self._connected:
            return
        self._outbox.extend(events.encode(self._origin, event))
        self._outbox_ready.set()

    def _receive(self, _connection: object, _pid: int, _channel: str, payload: object) -> None:
        text = str(payload)
        if text.startswith(self._own):
            return
        try:
            origin, event = events.decode(text)
        except ValueError:
            log.exception("ignoring a malformed notification")
            return
        if origin != self._origin:
            self._on_event(event)

    async def _run(self) -> None:
        delay = 0.1
        first = True
        while True:
            try:
                connection = await asyncpg.connect(
                    self._dsn,
                    **self._timeouts.connect_arguments(),
                    server_settings=session_settings(APPLICATION_NAME, self._timeouts),
                )
            except Exception as exc:
                if first:
                    raise
                log.warning("event bus: cannot reconnect (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            try:
                lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                connection.add_termination_listener(functools.partial(_mark_lost, lost))
                await connection.add_listener(events.NOTIFY_CHANNEL, self._receive)
                if not first:
                    # A catch-up that fails is retried on a new connection.
                    log.info("event bus: listening again; catching up")
                    await self._on_reconnect()
                    async with self._reconnected:
                        self.reconnects += 1
                        metrics.BUS_RECONNECTS.inc()
                        self._reconnected.notify_all()
                delay = 0.1
                first = False
                self._listening.set()
                self._connected = True
                await self._watch(connection, lost)
            except Exception as exc:
                if first:
                    raise
                level = logging.WARNING if domain_error(exc) else logging.ERROR
                log.log(level, "event bus: connection lost (%r); reconnecting", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                self._connected = False
                self._outbox.clear()
                if not connection.is_closed():
                    connection.terminate()

    async def _watch(self, connection: asyncpg.Connection, lost: asyncio.Future[None]) -> None:
        """Send what is sent; return when the connection is gone. A periodic query
        notices silent drops."""
        while not lost.done():
            ready = asyncio.ensure_future(self._outbox_ready.wait())
            waiting: set[asyncio.Future[Any]] = {lost, ready}
            try:
                done, _ = await asyncio.wait(
                    waiting, timeout=self._keepalive, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                ready.cancel()
            if lost in done:
                return
            if ready in done:
                self._outbox_ready.clear()
                payloads, self._outbox = self._outbox, []
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for may swallow
                # a cancellation that arrives as the statement completes, and the
                # bus would then never stop.
                async with asyncio.timeout(self._keepalive):
                    await connection.execute(_SEND, events.NOTIFY_CHANNEL, payloads)
                continue
            async with asyncio.timeout(self._keepalive):
                await connection.execute("SELECT 1")
