"""The bus between server processes: ephemeral events sent in order, and a bus
that stops when told to, whatever it is doing."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable

from atomchat_server.db.engine import asyncpg_dsn
from atomchat_server.domain import events
from atomchat_server.realtime.bus import Bus


async def _nothing() -> None:
    return None


class Heard(list[events.Event]):
    """Events a bus handed on that `keep` accepts, and a way to wait for them.
    The database is the session's: other tests' servers talk on it too."""

    def __init__(self, keep: Callable[[events.Event], bool]) -> None:
        super().__init__()
        self.changed = asyncio.Event()
        self._keep = keep

    def hear(self, event: events.Event) -> None:
        if self._keep(event):
            self.append(event)
            self.changed.set()

    async def until(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self) < count:
                self.changed.clear()
                await self.changed.wait()


def bus(database_url: str, origin: str, heard: Heard | None = None) -> Bus:
    # A long keepalive: a bus that missed being told to stop would sit out one.
    return Bus(
        asyncpg_dsn(database_url),
        origin=origin,
        on_event=heard.hear if heard is not None else lambda _event: None,
        on_reconnect=_nothing,
        keepalive_seconds=60.0,
    )


async def test_sent_events_reach_the_other_processes_in_the_order_sent(database_url: str) -> None:
    tag = f"ordered-{uuid.uuid4().hex}"
    heard = Heard(
        lambda event: isinstance(event, events.PresenceAlive) and event.origin.startswith(tag)
    )
    listener, sender = bus(database_url, "listener", heard), bus(database_url, "sender")
    other = bus(database_url, "another-server")
    await listener.start()
    await sender.start()
    await other.start()
    try:
        sent = [events.PresenceAlive(f"{tag}-{n}") for n in range(200)]
        for event in sent:
            sender.send(event)
            other.send(events.PresenceAlive("another-server"))
        await heard.until(len(sent))
        assert list(heard) == sent
    finally:
        await other.close()
        await sender.close()
        await listener.close()


async def test_a_bus_stops_when_told_even_in_the_middle_of_sending(database_url: str) -> None:
    chance = random.Random(7)
    for _ in range(40):
        busy = bus(database_url, "busy")
        await busy.start()

        async def keep_sending(sender: Bus = busy) -> None:
            while True:
                sender.send(events.PresenceAlive("busy"))
                await asyncio.sleep(0.0005)

        sending = asyncio.create_task(keep_sending())
        await asyncio.sleep(chance.uniform(0, 0.02))
        try:
            async with asyncio.timeout(5):
                await busy.close()
        finally:
            sending.cancel()
