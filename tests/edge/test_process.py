"""Envoy as a child process: a free port on request, a clean stop, a clear
error when it cannot start, and no Envoy left behind, even by a killed parent."""

from __future__ import annotations

import asyncio
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
from devsupport import serve_atomchat
from tests.support import eventually


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_port_zero_picks_a_free_port_and_stop_ends_the_process(
    app: App, tmp_path: Path
) -> None:
    envoy = Envoy(listen_host="127.0.0.1", http_port=0, grpc_ports=[app.port], work_dir=tmp_path)
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
            grpc_ports=[app.port],
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
                listen_host="127.0.0.1", http_port=0, grpc_ports=[9], work_dir=Path(sys.argv[1])
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


async def test_atomchat_serve_runs_envoy_reports_its_port_and_stops_it(
    database_url: str, tmp_path: Path
) -> None:
    async with serve_atomchat(
        database_url=database_url, envoy=True, ATOMCHAT_DATA_DIR=str(tmp_path)
    ) as server:
        assert set(server.ports) == {"grpc", "http", "pid"}
        url = f"http://127.0.0.1:{server.http_port}"
        assert f"HTTP      {url}  " in server.output(), "the port file and stdout agree"
        envoys = [
            child.pid
            for child in psutil.Process(server.pid).children(recursive=True)
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

        server.process.send_signal(signal.SIGTERM)
        assert await server.process.wait() == 0
        assert not server.port_file.exists()
    assert gone(envoys[0])
    assert "fork_posix" not in server.output(), "gRPC warned about fork()"
