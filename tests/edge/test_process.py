"""Envoy as a child process: a free port on request, a clean stop, a clear
error when it cannot start, and no Envoy left behind, even by a killed parent."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import textwrap
from pathlib import Path

import httpx
import psutil
import pytest

from atomchat_server.app import App
from atomchat_server.edge.envoy import Envoy, EnvoyError
from tests.support import eventually


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_port_zero_picks_a_free_port_and_stop_ends_the_process(
    app: App, tmp_path: Path
) -> None:
    envoy = Envoy(listen_host="127.0.0.1", http_port=0, grpc_port=app.port, work_dir=tmp_path)
    port = await envoy.start()
    pid = envoy.pid
    assert pid is not None
    assert port > 0
    assert envoy.admin is not None
    assert envoy.admin.host == "127.0.0.1"
    assert envoy.admin.port not in (0, port)
    assert await envoy.admin.is_ready()
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"http://127.0.0.1:{port}/v1/auth/token",
            json={"username": "moderator", "password": "1234"},
        )
    assert response.status_code == 200
    await envoy.stop()
    assert not psutil.pid_exists(pid)
    assert envoy.pid is None
    await envoy.stop()


async def test_a_port_in_use_fails_with_envoys_reason(app: App, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        envoy = Envoy(
            listen_host="127.0.0.1",
            http_port=taken.getsockname()[1],
            grpc_port=app.port,
            work_dir=tmp_path,
        )
        with pytest.raises(EnvoyError, match=r"(?i)address already in use"):
            await envoy.start()
    assert envoy.pid is None


async def test_envoy_dies_with_a_killed_parent(tmp_path: Path) -> None:
    parent_script = textwrap.dedent(
        """
        import asyncio, sys
        from pathlib import Path
        from atomchat_server.edge.envoy import Envoy

        async def main() -> None:
            envoy = Envoy(
                listen_host="127.0.0.1", http_port=0, grpc_port=9, work_dir=Path(sys.argv[1])
            )
            await envoy.start()
            print(envoy.pid, flush=True)
            await asyncio.Event().wait()

        asyncio.run(main())
        """
    )
    parent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        parent_script,
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert parent.stdout is not None
    async with asyncio.timeout(30):
        line = await parent.stdout.readline()
    envoy_pid = int(line)
    assert not gone(envoy_pid)
    parent.kill()
    await parent.wait()
    await eventually(lambda: asyncio.to_thread(gone, envoy_pid))


async def test_atomchat_serve_runs_envoy_and_stops_it(database_url: str, tmp_path: Path) -> None:
    environment = dict(os.environ, DATABASE_URL=database_url, ATOMCHAT_DATA_DIR=str(tmp_path))
    process = await asyncio.create_subprocess_exec(
        os.path.join(os.path.dirname(sys.executable), "atomchat"),
        "serve",
        "--grpc-port",
        "0",
        "--http-port",
        "0",
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(60):
            while not lines or "ready" not in lines[-1]:
                line = (await process.stdout.readline()).decode()
                assert line, "atomchat serve exited early:\n" + "".join(lines)
                lines.append(line)
        url = next(line.split()[1] for line in lines if line.startswith("HTTP "))
        envoys = [
            child.pid
            for child in psutil.Process(process.pid).children(recursive=True)
            if child.name() == "envoy"
        ]
        assert len(envoys) == 1
        async with httpx.AsyncClient(base_url=url) as http:
            response = await http.post(
                "/v1/auth/token", json={"username": "moderator", "password": "1234"}
            )
            page = await http.get("/")
        assert response.status_code == 200
        assert page.status_code == 200, "the web client is served from this checkout too"
        assert page.headers["content-type"].startswith("text/html")
        assert (tmp_path / "envoy" / "envoy.yaml").is_file()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            lines.extend((await process.stdout.read()).decode().splitlines(keepends=True))
            await process.wait()
    assert process.returncode == 0
    assert gone(envoys[0])
    assert not [line for line in lines if "fork_posix" in line], "gRPC warned about fork()"
