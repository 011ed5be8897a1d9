"""A gRPC call spoken over raw HTTP/2 (the h2 library): a client that can do
what well-behaved libraries never do, such as never granting the server any
flow-control window, or sending bytes that are not a message."""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings

READ_SIZE = 65536


@dataclass
class RawCall:
    """One gRPC call on its own HTTP/2 connection."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    connection: h2.connection.H2Connection
    stream_id: int
    data: bytearray = field(default_factory=bytearray)
    trailers: dict[str, str] = field(default_factory=dict)
    reset: int | None = None
    ended: bool = False
    _grant: bool = False
    _withheld: int = 0
    _outbox: bytearray = field(default_factory=bytearray)

    @classmethod
    async def open(
        cls,
        port: int,
        path: str,
        metadata: tuple[tuple[str, str], ...] = (),
        *,
        window: int = 65535,
    ) -> RawCall:
        """Open the call; the server may send at most `window` bytes before we grant more
        (and we never do)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        connection = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        connection.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}
        )
        connection.initiate_connection()
        stream_id = connection.get_next_available_stream_id()
        connection.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", f"127.0.0.1:{port}"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                *metadata,
            ],
        )
        call = cls(reader, writer, connection, stream_id)
        await call._flush()
        return call

    async def send(self, message: bytes) -> bool:
        """Queue one length-prefixed gRPC message (whatever its bytes are) and send as
        much of what is queued as the server's flow-control window lets through now;
        False while some of it still waits for window."""
        self._outbox.extend(struct.pack(">BI", 0, len(message)) + message)
        return await self.send_queued()

    async def send_queued(self) -> bool:
        while self._outbox and not self.ended:
            room = min(
                self.connection.local_flow_control_window(self.stream_id),
                self.connection.max_outbound_frame_size,
                len(self._outbox),
            )
            if room <= 0:
                return False
            self.connection.send_data(self.stream_id, bytes(self._outbox[:room]))
            del self._outbox[:room]
            await self._flush()
        return not self._outbox

    async def receive(self) -> None:
        """Take in what the server has sent (window updates, data, the end)."""
        await self._receive_once()

    async def until_ended(self, *, grant: bool = False) -> None:
        """Read until the server ends the stream (trailers or a reset); with grant=True,
        give the server back the window for everything read, as a reading client does."""
        self._grant = grant
        if grant and self._withheld:
            self.connection.acknowledge_received_data(self._withheld, self.stream_id)
            self._withheld = 0
            await self._flush()
        while not self.ended:
            await self._receive_once()

    def messages(self) -> list[bytes]:
        """The gRPC messages received so far (whole ones)."""
        found: list[bytes] = []
        position = 0
        while position + 5 <= len(self.data):
            (length,) = struct.unpack(">I", self.data[position + 1 : position + 5])
            if position + 5 + length > len(self.data):
                break
            found.append(bytes(self.data[position + 5 : position + 5 + length]))
            position += 5 + length
        return found

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()

    async def _flush(self) -> None:
        self.writer.write(self.connection.data_to_send())
        await self.writer.drain()

    async def _receive_once(self) -> None:
        chunk = await self.reader.read(READ_SIZE)
        if not chunk:
            self.ended = True
            return
        for event in self.connection.receive_data(chunk):
            if isinstance(event, h2.events.DataReceived) and event.stream_id == self.stream_id:
                self.data.extend(event.data)
                if self._grant:
                    self.connection.acknowledge_received_data(
                        event.flow_controlled_length, self.stream_id
                    )
                else:
                    self._withheld += event.flow_controlled_length
            elif isinstance(event, h2.events.TrailersReceived):
                self.trailers = {str(k): str(v) for k, v in event.headers}
                self.ended = True
            elif isinstance(event, h2.events.StreamReset) and event.stream_id == self.stream_id:
                self.reset = int(event.error_code)
                self.ended = True
        await self._flush()
