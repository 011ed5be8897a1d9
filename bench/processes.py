"""Servers under test as child processes: started, read for their address, stopped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import psutil

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True, slots=True)
class Server:
    pid: int
    address: str

    def rss_mib(self) -> float:
        return float(psutil.Process(self.pid).memory_info().rss) / (1 << 20)


def atomchat_command() -> list[str]:
    return [
        str(VENV_BIN / "atomchat"),
        "--log-level",
        "WARNING",
        "serve",
        "--no-envoy",
        "--grpc-port",
        "0",
    ]


def bare_command() -> list[str]:
    return [sys.executable, "-m", "bench.bare_server", "--port", "0"]


@contextlib.asynccontextmanager
async def running(
    command: list[str], log_path: Path, environment: dict[str, str]
) -> AsyncIterator[Server]:
    """Start `command`, wait for its `gRPC host:port` line; SIGTERM it on exit."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        process = await asyncio.create_subprocess_exec(
            *command,
            env={**os.environ, **environment},
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        drain: asyncio.Task[None] | None = None
        try:
            address = await asyncio.wait_for(_address(process), START_TIMEOUT)
            drain = asyncio.create_task(_copy(process, log))
            yield Server(process.pid, address)
        finally:
            if process.returncode is None:
                process.terminate()
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
            if drain is not None:
                await drain


async def _address(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    while True:
        line = (await process.stdout.readline()).decode()
        if not line:
            raise RuntimeError(f"the server exited early ({process.returncode})")
        if line.startswith("gRPC "):
            return line.split()[-1]


async def _copy(process: asyncio.subprocess.Process, log: TextIO) -> None:
    assert process.stdout is not None
    async for line in process.stdout:
        log.write(line.decode())
