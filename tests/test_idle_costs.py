"""Idle streams cost the server no timer of their own: the hub's one heartbeat
sweep serves them all (realtime/hub.py). Each stream has one task beside gRPC's
call, its writer (a task of its own so that each write resumes it alone, not
the call's chain of interceptors), and a ChatStream one more, the one that
reads what its client sends. (Memory per idle stream is measured by the
benchmark: bench/idle.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import types
from collections import Counter
from typing import Any

from atomchat_server.api import admission, status
from atomchat_server.api import chat as chat_api
from atomchat_server.api.chat import _OpenStream
from atomchat_server.auth import interceptor as auth_interceptor
from atomchat_server.observability import calls
from atomchat_server.realtime import delivery, hub
from tests.chat_support import chat, post, subscription
from tests.support import People

STREAMS = 100
# Timers that are not the streams' own may come and go meanwhile (a database
# connection's statement cache, a pool that grew): a few, never one a stream.
OTHER_TIMERS = 5


def server_tasks() -> Counter[str]:
    """Tasks running the server's own coroutines, by name."""
    found: Counter[str] = Counter()
    for task in asyncio.all_tasks():
        coroutine = task.get_coro()
        code = getattr(coroutine, "cr_code", None)
        if code is not None and "atomchat_server" in code.co_filename:
            found[getattr(coroutine, "__qualname__", "?")] += 1
    return found


def live_timers() -> int:
    """Timers armed on this loop (the tests' loop, which also runs the session's server)."""
    scheduled = getattr(asyncio.get_running_loop(), "_scheduled")  # noqa: B009 - asyncio's heap
    return sum(1 for handle in scheduled if not handle.cancelled())


async def test_idle_streams_hold_no_timer_and_no_task_but_their_writers_and_readers(
    people: People,
) -> None:
    owner = await people.user()
    room = await people.channel(owner)
    tasks_before, timers_before = server_tasks(), live_timers()
    async with contextlib.AsyncExitStack() as streams:
        for _ in range(STREAMS):
            await streams.enter_async_context(chat(owner, room.id, history_limit=0))
            feed = await streams.enter_async_context(subscription(owner, room.id, history_limit=0))
            await feed.until(lambda f: bool(f.of("joined")))
        added_tasks = server_tasks() - tasks_before
        added_timers = live_timers() - timers_before
    assert added_tasks == Counter(
        {"Delivery.run": 2 * STREAMS, "ChatServicer._read_sends": STREAMS}
    )
    assert added_timers <= OTHER_TIMERS


# Where a stream's coroutines come from: its servicer, its writer, the interceptors.
STREAM_PATH = {
    module.__file__
    for module in (chat_api, delivery, hub, admission, status, auth_interceptor, calls)
}


class _StreamFrames:
    """The suspended coroutines and async generators of the streams' code that
    appear from now on: a stream of an earlier test that gRPC has not released
    yet is not one of a test's own. Those seen at the start are held, so that
    no new one takes the id of one."""

    def __init__(self) -> None:
        self._earlier = _stream_frames()
        self._known = {id(thing) for thing in self._earlier}

    def new(self) -> list[Any]:
        return [thing for thing in _stream_frames() if id(thing) not in self._known]


def _frame_of(thing: object) -> types.FrameType | None:
    """A coroutine's or an async generator's frame while it is suspended."""
    if isinstance(thing, types.CoroutineType):
        return thing.cr_frame
    if isinstance(thing, types.AsyncGeneratorType):
        return thing.ag_frame
    return None


def _stream_frames() -> list[Any]:
    found: list[Any] = []
    for thing in gc.get_objects():
        frame = _frame_of(thing)
        if frame is not None and frame.f_code.co_filename in STREAM_PATH:
            found.append(thing)
    return found


def _locals(things: list[Any]) -> list[Any]:
    """The local variables of suspended coroutines and async generators."""
    return [
        value
        for thing in things
        if (frame := _frame_of(thing)) is not None
        for value in frame.f_locals.values()
    ]


async def test_an_open_stream_keeps_neither_its_history_nor_its_joined_frame(
    people: People,
) -> None:
    owner = await people.user()
    room = await people.channel(owner)
    for number in range(3):
        await post(owner, room.id, f"before {number}")
    frames = _StreamFrames()
    async with contextlib.AsyncExitStack() as streams:
        for _ in range(2):
            stream = await streams.enter_async_context(chat(owner, room.id, history_limit=3))
            await stream.feed.until_messages(3)
            feed = await streams.enter_async_context(subscription(owner, room.id, history_limit=3))
            await feed.until_messages(3)
        kept = _locals(frames.new())
        opened = {id(value): value for value in kept if isinstance(value, _OpenStream)}
        assert len(opened) == 4
        assert all(not stream.history for stream in opened.values())
        assert not [value for value in kept if isinstance(value, bytes)]
        assert not [value for value in kept if isinstance(value, list) and value]


async def test_an_idle_chat_streams_reader_waits_through_one_request_iterator_of_the_servers(
    people: People,
) -> None:
    """The errors interceptor's check of each request; the join, replayed by admission,
    leaves no iterator frame of its own behind, and a stream that only listens holds
    no set of sends in flight."""
    owner = await people.user()
    room = await people.channel(owner)
    frames = _StreamFrames()
    async with contextlib.AsyncExitStack() as streams:
        for _ in range(STREAMS):
            await streams.enter_async_context(chat(owner, room.id, history_limit=0))
        new = frames.new()
        generators = Counter(
            thing.ag_code.co_qualname
            for thing in new
            if isinstance(thing, types.AsyncGeneratorType)
        )
        kept = _locals(new)
    assert generators == Counter({"_checked": STREAMS})
    assert not [value for value in kept if isinstance(value, set)]
