"""Helpers for tests through Envoy: running one, grpc-web frames, server-sent
events, JSON errors."""

from __future__ import annotations

import contextlib
import json
import struct
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from atomchat_server.edge.envoy import Envoy

ROOT = Path(__file__).resolve().parents[2]
WEB_DIST = ROOT / "web" / "dist"
GRPC_WEB = "application/grpc-web+proto"
TRAILER_FLAG = 0x80


@dataclass(frozen=True, slots=True)
class RunningEnvoy:
    envoy: Envoy
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def running_envoy(
    *,
    grpc_port: int,
    work_dir: Path,
    web_dir: Path | None = None,
    stream_idle_timeout: float | None = None,
) -> AsyncIterator[RunningEnvoy]:
    envoy = Envoy(
        listen_host="127.0.0.1",
        http_port=0,
        grpc_ports=[grpc_port],
        work_dir=work_dir,
        web_dir=web_dir if web_dir is not None else work_dir / "no-web-client",
        stream_idle_timeout=stream_idle_timeout,
    )
    port = await envoy.start()
    try:
        yield RunningEnvoy(envoy, port)
    finally:
        await envoy.stop()


def authority(url: str) -> str:
    """host:port of a base URL, as gRPC clients take it."""
    return url.removeprefix("http://")


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def grpc_web_headers(token: str = "") -> dict[str, str]:
    headers = {"content-type": GRPC_WEB, "x-grpc-web": "1", "accept": GRPC_WEB}
    if token:
        headers.update(bearer(token))
    return headers


def grpc_web_frame(message: bytes) -> bytes:
    """One grpc-web data frame: flag byte 0, 4-byte big-endian length, message."""
    return struct.pack(">BI", 0, len(message)) + message


@dataclass
class GrpcWebReply:
    messages: list[bytes] = field(default_factory=list)
    trailers: dict[str, str] = field(default_factory=dict)

    def add(self, flag: int, payload: bytes) -> None:
        if flag & TRAILER_FLAG:
            for line in payload.decode().split("\r\n"):
                if line:
                    name, _, value = line.partition(":")
                    self.trailers[name.strip().lower()] = value.strip()
        else:
            self.messages.append(payload)


class GrpcWebFrames:
    """Splits a grpc-web response body, chunk by chunk, into its frames."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[tuple[int, bytes]]:
        self._buffer += chunk
        frames: list[tuple[int, bytes]] = []
        while len(self._buffer) >= 5:
            flag, length = struct.unpack(">BI", self._buffer[:5])
            if len(self._buffer) < 5 + length:
                break
            frames.append((flag, self._buffer[5 : 5 + length]))
            self._buffer = self._buffer[5 + length :]
        return frames

    @property
    def rest(self) -> bytes:
        return self._buffer


def parse_grpc_web(response: httpx.Response) -> GrpcWebReply:
    """A whole grpc-web response; a trailers-only reply has its status in the headers."""
    reply = GrpcWebReply()
    frames = GrpcWebFrames()
    for flag, payload in frames.feed(response.content):
        reply.add(flag, payload)
    assert frames.rest == b"", "a grpc-web body must end on a frame boundary"
    for name in ("grpc-status", "grpc-message"):
        if name in response.headers:
            reply.trailers.setdefault(name, response.headers[name])
    return reply


async def sse_events(response: httpx.Response) -> AsyncGenerator[dict[str, Any]]:
    """Server-sent events as the EventSource algorithm reads them: an event is
    the `data:` lines up to a blank line; lines without a known field are ignored."""
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield json.loads("\n".join(data))
                data = []
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value.removeprefix(" "))


def json_error(response: httpx.Response) -> tuple[int, str, list[dict[str, Any]]]:
    """The google.rpc.Status an error response carries: code, message, details."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    return body["code"], body["message"], body.get("details", [])


def error_reason(details: list[dict[str, Any]]) -> str:
    for detail in details:
        if detail["@type"] == "type.googleapis.com/google.rpc.ErrorInfo":
            reason: str = detail["reason"]
            return reason
    return ""
