"""Servers as child processes: started, waited for until they report their
ports in a port file, stopped with SIGTERM.

`atomchat serve --port-file PATH` writes {"grpc": PORT, "http": PORT, "pid":
PID} there once it is ready (http only with Envoy; with --replicas N, also
"replicas": [{"grpc": PORT, "pid": PID}, …], rewritten when one is started
again), renaming a finished file into place; bench.bare_server does the same.
Their stdout and stderr go to a log file, so nothing has to read them while
they run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devsupport.processes import child_environment, tool

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
# How often a starting server's port file is looked for.
POLL_SECONDS = 0.02


class ServerError(RuntimeError):
    """A server that did not start, or did not stop when told to."""


@dataclass(slots=True)
class Server:
    """A running child server: its process, the ports it reported, its output."""

    process: asyncio.subprocess.Process
    ports: Mapping[str, Any]
    port_file: Path
    log_path: Path
    final_output: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def grpc_port(self) -> int:
        port: int = self.ports["grpc"]
        return port

    @property
    def metrics_port(self) -> int | None:
        """Its Prometheus metrics port, when it serves one (atomchat serve --metrics-port)."""
        port: int | None = self.ports.get("metrics")
        return port

    @property
    def http_port(self) -> int | None:
        """Envoy's port, when the server runs one."""
        port: int | None = self.ports.get("http")
        return port

    def replicas(self) -> list[dict[str, int]]:
        """{"grpc": PORT, "pid": PID} of each replica, as the port file says now."""
        ports = _ports_in(self.port_file)
        assert ports is not None, "the server has removed its port file"
        replicas: list[dict[str, int]] = ports["replicas"]
        return replicas

    @property
    def address(self) -> str:
        """host:port of its gRPC server, as gRPC clients take it."""
        return f"127.0.0.1:{self.grpc_port}"

    def output(self) -> str:
        """What it has printed so far (all of it, once it has stopped)."""
        if self.final_output is not None:
            return self.final_output
        return _read(self.log_path)


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@contextlib.asynccontextmanager
async def running(
    command: Sequence[str],
    *,
    environment: Mapping[str, str],
    log_path: Path | None = None,
    port_file: Path | None = None,
) -> AsyncIterator[Server]:
    """Run `command` until the block ends; enter once it has written its port file.

    `--port-file PATH` (a temporary file) is added to the command, unless
    `port_file` is given: then the command or its environment names it already.
    stdout and stderr go to `log_path`, by default a temporary file.
    """
    with tempfile.TemporaryDirectory(prefix="atomchat-child-") as folder:
        if port_file is None:
            port_file = Path(folder) / "ports.json"
            command = [*command, "--port-file", str(port_file)]
        log_path = log_path if log_path is not None else Path(folder) / "output.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("w") as log:
            process = await asyncio.create_subprocess_exec(
                *command, env=dict(environment), stdout=log, stderr=asyncio.subprocess.STDOUT
            )
        server: Server | None = None
        try:
            ports = await _reported_ports(process, port_file, log_path)
            server = Server(process, ports, port_file, log_path)
            yield server
        finally:
            await _stop(process, log_path)
            if server is not None:
                server.final_output = _read(log_path)


async def _reported_ports(
    process: asyncio.subprocess.Process, port_file: Path, log_path: Path
) -> dict[str, Any]:
    try:
        async with asyncio.timeout(START_TIMEOUT):
            # Written by another process: there is no event to wait on.
            while (ports := await asyncio.to_thread(_ports_in, port_file)) is None:
                if process.returncode is not None:
                    raise ServerError(
                        f"the server exited ({process.returncode}) before it was ready:\n"
                        + _read(log_path)
                    )
                await asyncio.sleep(POLL_SECONDS)
    except TimeoutError:
        raise ServerError(
            f"the server wrote no port file within {START_TIMEOUT:.0f}s:\n" + _read(log_path)
        ) from None
    if ports.get("pid") != process.pid:
        raise ServerError(f"{port_file} names process {ports.get('pid')}, not {process.pid}")
    return ports


def _ports_in(port_file: Path) -> dict[str, Any] | None:
    """The port file's content, or None while there is none (it appears whole)."""
    try:
        text = port_file.read_text()
    except FileNotFoundError:
        return None
    ports: dict[str, Any] = json.loads(text)
    return ports


async def _stop(process: asyncio.subprocess.Process, log_path: Path) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
    try:
        async with asyncio.timeout(STOP_TIMEOUT):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise ServerError(
            f"the server did not stop within {STOP_TIMEOUT:.0f}s of SIGTERM:\n" + _read(log_path)
        ) from None


# The environment that turns every rate limit off (SPEC §10: `0` turns a limit off):
# for test runs and benchmarks that act for many users from one address.
NO_LIMITS = {
    "ATOMCHAT_LOGIN_FAILURES": "0",
    "ATOMCHAT_AUTH_PER_MINUTE": "0",
    "ATOMCHAT_MESSAGE_RATE": "0",
    "ATOMCHAT_STREAMS_PER_USER": "0",
    "ATOMCHAT_CHANNELS_PER_HOUR": "0",
}


@contextlib.asynccontextmanager
async def serve_atomchat(
    *args: str,
    database_url: str | None,
    envoy: bool = False,
    log_level: str | None = None,
    log_path: Path | None = None,
    limits: bool = False,
    **environment: str,
) -> AsyncIterator[Server]:
    """`atomchat serve` on free ports (gRPC; Envoy's HTTP too with envoy=True).

    The child gets this process's environment without AtomChat's settings,
    then DATABASE_URL (none: an embedded PostgreSQL), the rate limits turned
    off (NO_LIMITS; limits=True keeps the defaults) and `environment`; `args`
    go after `serve`.
    """
    command = [tool("atomchat")]
    if log_level is not None:
        command += ["--log-level", log_level]
    command += ["serve", "--grpc-port", "0"]
    command += ["--http-port", "0"] if envoy else ["--no-envoy"]
    settings = {} if limits else dict(NO_LIMITS)
    settings.update(environment)
    if database_url is not None:
        settings["DATABASE_URL"] = database_url
    async with running(
        [*command, *args], environment=child_environment(**settings), log_path=log_path
    ) as server:
        yield server
