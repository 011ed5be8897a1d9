"""Off the README's path (issue 9, SPEC §6): one owner per port and per embedded
database, one clear line per failure, signals and children, the signing key."""

from __future__ import annotations

import asyncio
import signal
import socket
import stat
from pathlib import Path

import grpc
import psutil
import pytest
from atomchat.v1 import users_pb2
from grpc_health.v1 import health_pb2

from devsupport import (
    child_environment,
    fresh_database,
    run_atomchat,
    serve_atomchat,
)
from tests.conftest import TEST_SETTINGS
from tests.support import Api
from tests.test_serve import health, processes_mentioning

SERVING = health_pb2.HealthCheckResponse.SERVING
JWT = TEST_SETTINGS.jwt_secret
# A second server that wrongly starts would run until this kills it.
REFUSAL_TIMEOUT = 60.0


def one_line(output: str) -> str:
    """The `atomchat: ...` line of a refusal, after checking it is the only complaint."""
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("atomchat: ")]
    assert len(lines) == 1, output
    return lines[0]


async def refused_serve(*args: str, **environment: str) -> tuple[str, str]:
    """`atomchat serve --no-envoy --grpc-port 0 ARGS`, which must refuse to start:
    its one `atomchat:` line, and everything it printed."""
    result = await run_atomchat(
        "serve",
        "--no-envoy",
        "--grpc-port",
        "0",
        *args,
        env=child_environment(**environment),
        timeout=REFUSAL_TIMEOUT,
    )
    assert result.returncode != 0, result.output
    assert "AtomChat is ready" not in result.output
    return one_line(result.output), result.output


async def login(address: str, username: str = "moderator", password: str = "1234") -> str:  # noqa: S107
    async with grpc.aio.insecure_channel(address) as channel:
        response = await Api(channel).users.Login(
            users_pb2.LoginRequest(username=username, password=password)
        )
    return str(response.access_token)


async def get_me(address: str, token: str) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        me = await Api(channel, token).users.GetMe(users_pb2.GetMeRequest())
    return str(me.username)


# 1. One owner per port.


async def test_a_second_serve_on_a_taken_grpc_port_refuses_in_one_line(
    database_url: str, tmp_path: Path
) -> None:
    async with serve_atomchat(database_url=database_url, ATOMCHAT_JWT_SECRET=JWT) as first:
        line, _ = await refused_serve(
            "--grpc-port", str(first.grpc_port), DATABASE_URL=database_url, ATOMCHAT_JWT_SECRET=JWT
        )
        assert f"port {first.grpc_port} is already in use (another atomchat serve?)" in line
        assert await health(first.grpc_port) == SERVING


async def test_a_second_serve_on_a_taken_http_port_refuses_in_one_line(
    database_url: str, tmp_path: Path
) -> None:
    async with serve_atomchat(
        database_url=database_url,
        envoy=True,
        ATOMCHAT_DATA_DIR=str(tmp_path / "a"),
        ATOMCHAT_JWT_SECRET=JWT,
    ) as first:
        assert first.http_port is not None
        second = await run_atomchat(
            "serve",
            "--grpc-port",
            "0",
            "--http-port",
            str(first.http_port),
            env=child_environment(
                DATABASE_URL=database_url,
                ATOMCHAT_DATA_DIR=str(tmp_path / "b"),
                ATOMCHAT_JWT_SECRET=JWT,
            ),
            timeout=REFUSAL_TIMEOUT,
        )
        assert second.returncode != 0
        assert f"port {first.http_port} is already in use" in one_line(second.output)


async def test_a_port_held_by_another_program_is_one_line(database_url: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        line, _ = await refused_serve(
            "--grpc-port", str(port), DATABASE_URL=database_url, ATOMCHAT_JWT_SECRET=JWT
        )
    assert f"port {port} is already in use" in line


# 2. One owner per embedded database.


async def test_seed_and_migrate_beside_a_running_serve_use_its_database(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "data")
    async with serve_atomchat(database_url=None, ATOMCHAT_DATA_DIR=data_dir) as server:
        postgres = await asyncio.to_thread(processes_mentioning, data_dir)
        assert postgres
        environment = child_environment(ATOMCHAT_DATA_DIR=data_dir)
        seeded = await run_atomchat("seed", env=environment)
        assert seeded.returncode == 0, seeded.output
        assert "nothing changed" in seeded.output
        migrated = await run_atomchat("migrate", env=environment)
        assert migrated.returncode == 0, migrated.output

        assert [p.pid for p in await asyncio.to_thread(processes_mentioning, data_dir)] == [
            p.pid for p in postgres
        ], "the server's PostgreSQL was neither stopped nor restarted"
        assert await health(server.grpc_port) == SERVING
        token = await login(server.address)
        assert await get_me(server.address, token) == "moderator"
    assert server.process.returncode == 0, server.output()
    left = await asyncio.to_thread(processes_mentioning, data_dir)
    assert left == [], "the last one out stops it"


# 3. The schema revision, checked at start.


async def test_serve_on_an_unmigrated_database_refuses_and_serve_migrate_fixes_it(
    postgres_server_url: str,
) -> None:
    async with fresh_database(postgres_server_url, migrated=False) as url:
        line, _ = await refused_serve(DATABASE_URL=url, ATOMCHAT_JWT_SECRET=JWT)
        assert "run `atomchat migrate`" in line

        async with serve_atomchat("--migrate", database_url=url, ATOMCHAT_JWT_SECRET=JWT) as server:
            assert await health(server.grpc_port) == SERVING


async def test_serve_on_an_older_schema_names_both_revisions(postgres_server_url: str) -> None:
    from atomchat_server.db.migrate import head_revision, upgrade

    async with fresh_database(postgres_server_url, migrated=False) as url:
        await upgrade(url, "0001")
        line, _ = await refused_serve(DATABASE_URL=url, ATOMCHAT_JWT_SECRET=JWT)
    assert f"at revision 0001, this server needs {head_revision()}" in line
    assert "atomchat migrate" in line


async def test_the_app_does_not_serve_a_database_without_its_schema(
    postgres_server_url: str,
) -> None:
    from atomchat_server.app import App
    from atomchat_server.db.migrate import SchemaError

    async with fresh_database(postgres_server_url, migrated=False) as url:
        app = App(TEST_SETTINGS, url)
        try:
            with pytest.raises(SchemaError):
                await app.start()
            async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
                from tests.support import health_stub

                response = await health_stub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=10
                )
            assert response.status == health_pb2.HealthCheckResponse.NOT_SERVING
        finally:
            await app.stop()


# 4. One line per failure; the traceback with --log-level DEBUG.


async def test_a_closed_database_port_is_one_line_after_a_bounded_wait() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    line, output = await refused_serve(
        DATABASE_URL=f"postgresql://postgres@127.0.0.1:{closed}/atomchat",
        ATOMCHAT_DATABASE_WAIT_SECONDS="1",
        ATOMCHAT_JWT_SECRET=JWT,
    )
    assert f"cannot reach PostgreSQL at 127.0.0.1:{closed} (connection refused)" in line
    assert "Check DATABASE_URL" in line
    waiting = [entry for entry in output.splitlines() if "waiting for PostgreSQL" in entry]
    assert 1 <= len(waiting) <= 2, output  # once, then every 5 s
    assert "Event loop is closed" not in output


async def test_a_database_that_does_not_exist_is_one_line_and_debug_shows_why(
    postgres_server_url: str,
) -> None:
    missing = postgres_server_url.rsplit("/", 1)[0] + "/atomchat_no_such_database"
    line, _ = await refused_serve(DATABASE_URL=missing, ATOMCHAT_JWT_SECRET=JWT)
    assert '"atomchat_no_such_database" does not exist' in line
    assert "DATABASE_URL" in line

    # --log-level after the command, as well as before it.
    debug = await run_atomchat(
        "serve",
        "--no-envoy",
        "--grpc-port",
        "0",
        "--log-level",
        "DEBUG",
        env=child_environment(DATABASE_URL=missing, ATOMCHAT_JWT_SECRET=JWT),
        timeout=REFUSAL_TIMEOUT,
    )
    assert debug.returncode != 0
    assert "Traceback" in debug.output
    assert '"atomchat_no_such_database" does not exist' in debug.output


async def test_seed_before_migrate_is_one_line(postgres_server_url: str) -> None:
    async with fresh_database(postgres_server_url, migrated=False) as url:
        result = await run_atomchat("seed", env=child_environment(DATABASE_URL=url))
    assert result.returncode != 0
    assert "run `atomchat migrate`" in one_line(result.output)


async def test_serve_help_names_the_environment() -> None:
    result = await run_atomchat("serve", "--help", env=child_environment())
    assert result.returncode == 0
    for name in ("DATABASE_URL", "ATOMCHAT_JWT_SECRET", "ATOMCHAT_METRICS_PORT", "--log-format"):
        assert name in result.output


# 5. Signals and children.


async def test_sighup_stops_serve_like_sigterm(database_url: str) -> None:
    async with serve_atomchat(database_url=database_url, ATOMCHAT_JWT_SECRET=JWT) as server:
        server.process.send_signal(signal.SIGHUP)
        assert await server.process.wait() == 0
        assert not server.port_file.exists()
    assert "shutting down" in server.output()


async def test_no_child_outlives_a_killed_server(database_url: str, tmp_path: Path) -> None:
    async with serve_atomchat(
        database_url=database_url,
        envoy=True,
        ATOMCHAT_DATA_DIR=str(tmp_path),
        ATOMCHAT_HASH_WORKERS="2",
        ATOMCHAT_JWT_SECRET=JWT,
    ) as server:
        children = await asyncio.to_thread(psutil.Process(server.pid).children, True)
        names = [" ".join(child.cmdline()) for child in children]
        assert sum("multiprocessing" in name for name in names) >= 3, names  # 2 workers, tracker
        assert any(child.name() == "envoy" for child in children), names
        server.process.kill()
        await server.process.wait()
        _, alive = await asyncio.to_thread(psutil.wait_procs, children, 30)
        left = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
        assert left == [], [p.cmdline() for p in left]


# Issue 10.3: no secret printed in the repository signs anything.


async def test_a_local_run_makes_its_secret_once_and_keeps_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with serve_atomchat(database_url=None, ATOMCHAT_DATA_DIR=str(data_dir)) as first:
        token = await login(first.address)
    secret_file = data_dir / "jwt-secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = secret_file.read_text().strip()
    assert len(secret) >= 32

    async with serve_atomchat(database_url=None, ATOMCHAT_DATA_DIR=str(data_dir)) as second:
        assert await get_me(second.address, token) == "moderator", "the same secret, reused"
    assert secret_file.read_text().strip() == secret


async def test_another_data_folder_has_another_secret(database_url: str, tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    async with serve_atomchat(database_url=database_url, ATOMCHAT_DATA_DIR=str(first)) as a:
        token = await login(a.address)
    async with (
        serve_atomchat(database_url=database_url, ATOMCHAT_DATA_DIR=str(second)) as b,
        grpc.aio.insecure_channel(b.address) as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await Api(channel, token).users.GetMe(users_pb2.GetMeRequest())
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (first / "jwt-secret").read_text() != (second / "jwt-secret").read_text()


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
async def test_listening_beyond_loopback_without_a_secret_refuses(
    host: str, tmp_path: Path
) -> None:
    line, _ = await refused_serve("--host", host, ATOMCHAT_DATA_DIR=str(tmp_path / "data"))
    assert f"listening on {host} needs ATOMCHAT_JWT_SECRET" in line
    assert not (tmp_path / "data").exists(), "nothing started"


def test_no_secret_is_configured_by_default() -> None:
    from atomchat_server.config import Settings

    assert Settings.from_environment({}).jwt_secret == ""
