"""`atomchat serve --replicas N`: N gRPC server processes on one database.

The parent `serve` (which owns the embedded database, if any, and Envoy)
runs each replica as a child `atomchat serve --no-envoy --replicas 1` with
its own port and port file, and waits until every one has written it. A
replica listens on `--grpc-port` plus its index (0, 1, …), or on a free port
when the port is 0, and keeps that port when it is started again, so that
Envoy's endpoints stay valid; its metrics port likewise.

Children die with the parent, even a SIGKILLed one (PR_SET_PDEATHSIG:
SIGTERM, so that they still end their streams in order), and run in their
own session, so that Ctrl-C reaches the parent only, which stops them first
and then Envoy.

A replica that exits while the parent serves (killed, crashed) is started
again on the same port after `replica_restart_seconds`, a wait that doubles
each time the same replica exits again within STABLE_SECONDS of starting,
up to MAX_RESTART_SECONDS. Meanwhile Envoy's health checks have taken it
out of the rotation, and its clients have resumed on the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atomchat_server.children import die_with_parent, python_module
from atomchat_server.config import Settings
from atomchat_server.ports import ensure_free

log = logging.getLogger(__name__)

START_SECONDS = 60.0
POLL_SECONDS = 0.02
# A replica that served this long before it exited is started again after the
# first wait; one that exits sooner waits twice as long as the last time.
STABLE_SECONDS = 60.0
MAX_RESTART_SECONDS = 30.0
# On top of the replica's own shutdown grace, before it is killed.
STOP_MARGIN_SECONDS = 10.0


class ReplicaError(RuntimeError):
    """A replica did not start."""


@dataclass(slots=True)
class Replica:
    """One child server: where it listens, and its current process."""

    index: int
    grpc_port: int
    metrics_port: int | None
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    quick_exits: int = 0
    supervisor: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def describe(self) -> dict[str, int]:
        """Its entry in the port file."""
        entry = {"grpc": self.grpc_port, "pid": self.pid}
        if self.metrics_port is not None:
            entry["metrics"] = self.metrics_port
        return entry


def replica_port(base: int | None, index: int) -> int | None:
    """Replica `index`'s port for a configured `base` port (0: any free one)."""
    if base is None:
        return None
    return base + index if base else 0


class Replicas:
    """The replicas of one `atomchat serve`, started, supervised and stopped together."""

    def __init__(
        self,
        settings: Settings,
        database_url: str,
        *,
        log_level: str,
        log_format: str,
        on_restart: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.database_url = database_url
        self.log_options = ["--log-level", log_level, "--log-format", log_format]
        self.on_restart = on_restart
        self.replicas = [
            Replica(
                index,
                replica_port(settings.grpc_port, index) or 0,
                replica_port(settings.metrics_port, index),
            )
            for index in range(settings.replicas)
        ]
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._stopping = False

    @property
    def grpc_ports(self) -> list[int]:
        return [replica.grpc_port for replica in self.replicas]

    def describe(self) -> list[dict[str, int]]:
        return [replica.describe() for replica in self.replicas]

    async def start(self) -> None:
        """Start every replica and wait until each serves; ReplicaError (after stopping
        the others) if one does not. PortInUse first if a configured port is taken."""
        settings = self.settings
        for replica in self.replicas:
            ensure_free(settings.host, replica.grpc_port, f"replica {replica.index + 1}'s gRPC")
            if replica.metrics_port:
                ensure_free(
                    settings.host, replica.metrics_port, f"replica {replica.index + 1}'s metrics"
                )
        self._folder = tempfile.TemporaryDirectory(prefix="atomchat-replicas-")
        try:
            async with asyncio.TaskGroup() as starting:
                for replica in self.replicas:
                    starting.create_task(self._start(replica))
        except BaseException:
            await self.stop()
            raise
        for replica in self.replicas:
            replica.supervisor = asyncio.create_task(
                self._supervise(replica), name=f"replica-{replica.index + 1}"
            )

    async def stop(self) -> None:
        """SIGTERM every replica (they end their streams UNAVAILABLE), SIGKILL one that
        lingers; returns once all have exited."""
        self._stopping = True
        for replica in self.replicas:
            if replica.supervisor is not None:
                replica.supervisor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await replica.supervisor
        await asyncio.gather(*(self._end(replica) for replica in self.replicas))
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def _port_file(self, replica: Replica) -> Path:
        assert self._folder is not None
        return Path(self._folder.name) / f"replica-{replica.index + 1}.json"

    def _command(self, replica: Replica, port_file: Path) -> list[str]:
        command = python_module("atomchat_server", *self.log_options, "serve")
        command += ["--no-envoy", "--replicas", "1", "--host", self.settings.host]
        command += ["--grpc-port", str(replica.grpc_port), "--port-file", str(port_file)]
        if replica.metrics_port is not None:
            command += ["--metrics-port", str(replica.metrics_port)]
        return command

    def _environment(self) -> dict[str, str]:
        # The parent's environment (limits, timeouts, logging), its database and
        # signing key (a local run's generated key lives only in the parent).
        environment = dict(os.environ)
        environment["DATABASE_URL"] = self.database_url
        environment["ATOMCHAT_JWT_SECRET"] = self.settings.jwt_secret
        return environment

    async def _start(self, replica: Replica) -> None:
        """Start `replica` and wait for its port file; ReplicaError if it exits first."""
        port_file = self._port_file(replica)
        port_file.unlink(missing_ok=True)
        replica.process = await asyncio.create_subprocess_exec(
            *self._command(replica, port_file),
            env=self._environment(),
            stdin=asyncio.subprocess.DEVNULL,
            # Its banner is the parent's to print; its log lines go where the parent's go.
            stdout=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent(os.getpid()),
        )
        replica.started_at = asyncio.get_running_loop().time()
        try:
            ports = await self._until_ready(replica, port_file)
        except BaseException:
            await self._end(replica)
            raise
        replica.grpc_port = ports["grpc"]
        if "metrics" in ports:
            replica.metrics_port = ports["metrics"]
        log.info(
            "replica %d (pid %d) serves on port %d",
            replica.index + 1,
            replica.pid,
            replica.grpc_port,
        )

    async def _until_ready(self, replica: Replica, port_file: Path) -> dict[str, Any]:
        assert replica.process is not None
        try:
            async with asyncio.timeout(START_SECONDS):
                # Written by the child: there is no event to wait on.
                while (ports := await asyncio.to_thread(_read_ports, port_file)) is None:
                    if replica.process.returncode is not None:
                        raise ReplicaError(
                            f"replica {replica.index + 1} exited with status "
                            f"{replica.process.returncode} before it was ready"
                        )
                    await asyncio.sleep(POLL_SECONDS)
        except TimeoutError:
            raise ReplicaError(
                f"replica {replica.index + 1} was not ready after {START_SECONDS:.0f} s"
            ) from None
        return ports

    async def _supervise(self, replica: Replica) -> None:
        """Start `replica` again whenever it exits, after a wait (see the module's doc)."""
        loop = asyncio.get_running_loop()
        while True:
            assert replica.process is not None
            status = await replica.process.wait()
            if self._stopping:
                return
            served = loop.time() - replica.started_at
            replica.quick_exits = 0 if served >= STABLE_SECONDS else replica.quick_exits + 1
            delay = min(
                self.settings.replica_restart_seconds * 2 ** max(replica.quick_exits - 1, 0),
                max(MAX_RESTART_SECONDS, self.settings.replica_restart_seconds),
            )
            log.warning(
                "replica %d (pid %d) exited with status %d; starting it again in %.1f s",
                replica.index + 1,
                replica.pid,
                status,
                delay,
            )
            await asyncio.sleep(delay)
            try:
                await self._start(replica)
            except ReplicaError as exc:
                log.error("%s", exc)
                continue
            if self.on_restart is not None:
                await self.on_restart()

    async def _end(self, replica: Replica) -> None:
        process = replica.process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                async with asyncio.timeout(self.settings.shutdown_grace + STOP_MARGIN_SECONDS):
                    await process.wait()
            except TimeoutError:
                log.warning("replica %d ignored SIGTERM; killing it", replica.index + 1)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()


def _read_ports(port_file: Path) -> dict[str, Any] | None:
    """A replica's port file, or None while there is none (it appears whole)."""
    try:
        text = port_file.read_text()
    except FileNotFoundError:
        return None
    ports: dict[str, Any] = json.loads(text)
    return ports
