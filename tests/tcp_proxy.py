"""A TCP relay a test puts between two parties (a server and PostgreSQL, a client
and a server), to cut or reset the link at will, or to lose PostgreSQL's
answers on the one connection that sent some bytes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # Set once the client sent the proxy's `silence_after` bytes: nothing more reaches it.
    silenced: bool = False

    @property
    def upstream_port(self) -> int:
        """The local port of the relay's connection to PostgreSQL (its client_port there)."""
        return int(self.upstream.get_extra_info("sockname")[1])

    def close(self) -> None:
        for writer in (self.client, self.upstream):
            writer.close()

    def reset(self) -> None:
        """Drop both connections with a TCP reset, as a crashed peer or middlebox would."""
        for writer in (self.client, self.upstream):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()


class TcpProxy:
    """Relays connections to `target`; `refuse_new` makes new ones fail at once.

    `silence_after(pattern)`: the first connection whose client then sends
    `pattern` (within one read) gets nothing more from the server, as if the
    server's answers were lost on the way; `silenced` is set when that happens.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self.refuse_new = False
        self.port = 0
        self._silence_pattern: bytes | None = None
        self.silenced = asyncio.Event()

    def silence_after(self, pattern: bytes) -> None:
        self._silence_pattern = pattern
        self.silenced.clear()

    def _watch(self, link: _Link, data: bytes) -> None:
        pattern = self._silence_pattern
        if pattern is not None and pattern in data:
            self._silence_pattern = None
            link.silenced = True
            self.silenced.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def reset(self) -> None:
        """Reset every relayed connection (RST both ways)."""
        for link in list(self._links):
            link.reset()

    def upstream_ports(self) -> list[int]:
        return [link.upstream_port for link in self._links]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.close()
        tasks = [task for link in self._links for task in link.tasks]
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse_new:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        watch = functools.partial(self._watch, link)
        link.tasks = [
            asyncio.create_task(_pump(reader, up_writer, seen=watch)),
            asyncio.create_task(_pump(up_reader, writer, muted=lambda: link.silenced)),
        ]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        link.close()
        self._links.discard(link)


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    seen: Callable[[bytes], None] | None = None,
    muted: Callable[[], bool] = lambda: False,
) -> None:
    try:
        while data := await reader.read(65536):
            if seen is not None:
                seen(data)
            if muted():
                continue
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def proxied(database_url: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    """A relay to the database's server, and the database's URL through it."""
    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    try:
        through = url.set(host="127.0.0.1", port=proxy.port)
        yield proxy, through.render_as_string(hide_password=False)
    finally:
        await proxy.close()
