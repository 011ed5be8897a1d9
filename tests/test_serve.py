"""`atomchat serve` end to end: an embedded PostgreSQL when there is no DATABASE_URL,
health, the seeded login, the port file, a clean stop on SIGTERM, and refusing an
unsafe production start."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import grpc
import psutil
from atomchat.v1 import users_pb2
from grpc_health.v1 import health_pb2

from devsupport import child_environment, run_atomchat, running, serve_atomchat, tool
from tests.conftest import TEST_SETTINGS
from tests.support import Api, health_stub, unique

SERVING = health_pb2.HealthCheckResponse.SERVING


def processes_mentioning(text: str) -> list[psutil.Process]:
    """Running processes whose command line contains `text`."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if process.info["status"] != psutil.STATUS_ZOMBIE and any(text in a for a in cmdline):
            found.append(process)
    return found


def descendants(processes: list[psutil.Process]) -> list[psutil.Process]:
    found = list(processes)
    for process in processes:
        try:
            found.extend(process.children(recursive=True))
        except psutil.NoSuchProcess:
            continue
    return found


async def still_running(processes: list[psutil.Process]) -> list[psutil.Process]:
    _, alive = await asyncio.to_thread(psutil.wait_procs, processes, 30)
    return [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


async def health(port: int) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = await health_stub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    return int(response.status)


async def test_serve_without_database_url_runs_seeds_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "atomchat-data"
    async with serve_atomchat(database_url=None, ATOMCHAT_DATA_DIR=str(data_dir)) as server:
        assert f"gRPC      {server.address}\n" in server.output()
        assert await health(server.grpc_port) == SERVING
        async with grpc.aio.insecure_channel(server.address) as channel:
            login = await Api(channel).users.Login(
                users_pb2.LoginRequest(username="moderator", password="1234")
            )
            me = await Api(channel, login.access_token).users.GetMe(users_pb2.GetMeRequest())
        assert me.username == "moderator"

        postgres = await asyncio.to_thread(processes_mentioning, str(data_dir))
        assert postgres, "the embedded PostgreSQL should run with the data folder"
        started = await asyncio.to_thread(
            descendants, [psutil.Process(server.process.pid), *postgres]
        )
        assert (data_dir / "postgres" / "PG_VERSION").exists()

    assert server.process.returncode == 0, server.output()
    assert await still_running(started) == [], server.output()
    assert await asyncio.to_thread(processes_mentioning, str(data_dir)) == []


async def test_serve_on_the_same_data_folder_keeps_the_data(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "atomchat-data")
    username = unique("kept")
    async with (
        serve_atomchat(database_url=None, ATOMCHAT_DATA_DIR=data_dir) as first,
        grpc.aio.insecure_channel(first.address) as channel,
    ):
        await Api(channel).users.Register(
            users_pb2.RegisterRequest(username=username, password="secret-pw")
        )
    assert first.process.returncode == 0

    async with serve_atomchat(database_url=None, ATOMCHAT_DATA_DIR=data_dir) as second:
        async with grpc.aio.insecure_channel(second.address) as channel:
            login = await Api(channel).users.Login(
                users_pb2.LoginRequest(username=username, password="secret-pw")
            )
        assert login.user.username == username
        assert "nothing changed" in second.output()
    assert second.process.returncode == 0
    assert await asyncio.to_thread(processes_mentioning, data_dir) == []


async def test_the_port_file_names_the_ports_once_ready_and_is_gone_after_sigterm(
    database_url: str, tmp_path: Path
) -> None:
    port_file = tmp_path / "ports.json"
    environment = child_environment(
        DATABASE_URL=database_url,
        ATOMCHAT_JWT_SECRET=TEST_SETTINGS.jwt_secret,
        ATOMCHAT_PORT_FILE=str(port_file),
    )
    command = [tool("atomchat"), "serve", "--no-envoy", "--grpc-port", "0"]
    async with running(command, environment=environment, port_file=port_file) as server:
        ports = json.loads(port_file.read_text())
        assert set(ports) == {"grpc", "pid"}, "no http without Envoy"
        assert ports["pid"] == server.pid
        assert f"gRPC      127.0.0.1:{ports['grpc']}\n" in server.output()
        assert "AtomChat is ready" in server.output(), "written once ready"
        assert await health(ports["grpc"]) == SERVING
        left = await asyncio.to_thread(os.listdir, tmp_path)
        assert left == [port_file.name], "no temporary file is left beside it"

        server.process.send_signal(signal.SIGTERM)
        assert await server.process.wait() == 0
        assert not port_file.exists()


async def test_production_with_the_default_secret_refuses_to_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "atomchat-data"
    result = await run_atomchat(
        "serve",
        "--no-envoy",
        "--grpc-port",
        "0",
        env=child_environment(ATOMCHAT_ENV="production", ATOMCHAT_DATA_DIR=str(data_dir)),
    )
    assert result.returncode != 0
    assert "ATOMCHAT_ENV=production needs ATOMCHAT_JWT_SECRET" in result.output
    assert "Traceback" not in result.output
    assert not data_dir.exists(), "nothing should have started"


async def test_production_with_a_short_secret_refuses_to_start(tmp_path: Path) -> None:
    result = await run_atomchat(
        "serve",
        "--no-envoy",
        env=child_environment(
            ATOMCHAT_ENV="production",
            ATOMCHAT_JWT_SECRET="too-short",
            ATOMCHAT_DATA_DIR=str(tmp_path / "data"),
        ),
    )
    assert result.returncode != 0
    assert "ATOMCHAT_JWT_SECRET must be at least 32 characters in production" in result.output
