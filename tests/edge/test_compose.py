"""docker-compose.yml against the compose specification's schema, and the
compose setup against envoy.yaml and the server it fronts.

No Docker engine runs here: the images are not pulled or built, so these
checks stop at what the files say."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from atomchat.v1 import users_pb2
from sqlalchemy.engine import make_url

from atomchat_server.app import App
from atomchat_server.config import Settings
from atomchat_server.edge import config
from atomchat_server.edge.envoy import envoy_binary
from devsupport import child_environment, fresh_database, run, running, tool
from tests.conftest import TEST_SETTINGS
from tests.edge.edge_support import ROOT
from tests.support import Api

COMPOSE_ENVIRONMENT = {"ATOMCHAT_JWT_SECRET": TEST_SETTINGS.jwt_secret}
_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:[-?])(?P<arg>[^}]*))?\}")


class MissingVariable(LookupError):
    pass


def interpolate(node: Any, environment: Mapping[str, str]) -> Any:
    """Compose's variable interpolation: ${NAME}, ${NAME:-default}, ${NAME:?error}, $$."""
    if isinstance(node, dict):
        return {key: interpolate(value, environment) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, environment) for value in node]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        value = environment.get(match["name"], "")
        if match["op"] == ":?" and not value:
            raise MissingVariable(match["arg"])
        if match["op"] == ":-" and not value:
            return match["arg"]
        return value

    return _VARIABLE.sub(substitute, node)


@pytest.fixture(scope="module")
def raw_compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text("utf-8"))
    return loaded


@pytest.fixture(scope="module")
def compose(raw_compose: dict[str, Any]) -> dict[str, Any]:
    """The file as `docker compose config` renders it, given the one required variable."""
    rendered: dict[str, Any] = interpolate(raw_compose, COMPOSE_ENVIRONMENT)
    return rendered


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path (relative to the repository) of bind mounts."""
    found: dict[str, str] = {}
    for volume in service["volumes"]:
        host, container, *_ = volume.split(":")
        found[container] = host
    return found


async def test_compose_file_follows_the_compose_specification() -> None:
    checked = await run(
        tool("check-jsonschema"),
        "--builtin-schema",
        "vendor.compose-spec",
        str(ROOT / "docker-compose.yml"),
        merge_output=True,
    )
    assert checked.returncode == 0, checked.output


async def test_the_envoy_image_is_the_version_atomchat_serve_runs(
    compose: dict[str, Any],
) -> None:
    output = (await run(str(envoy_binary()), "--version", merge_output=True)).output
    local = re.search(r"/(\d+\.\d+)\.\d+/", output)
    assert local is not None, output
    image = compose["services"]["envoy"]["image"]
    assert image.startswith(f"envoyproxy/envoy:v{local.group(1)}")


def test_envoy_gets_its_config_descriptor_and_web_client(compose: dict[str, Any]) -> None:
    envoy = compose["services"]["envoy"]
    mounted = mounts(envoy)
    config_path = envoy["command"][envoy["command"].index("--config-path") + 1]
    assert mounted[config_path] == "./envoy.yaml"

    template = config.load_template()
    descriptors = {t["proto_descriptor"] for t in config.transcoders(template)}
    assert len(descriptors) == 1
    descriptor = mounted[descriptors.pop()]
    assert (ROOT / descriptor).resolve() == config.packaged_descriptor().resolve()

    routes = config.connection_manager(template)["route_config"]["virtual_hosts"][0]["routes"]
    files = [
        Path(r["direct_response"]["body"]["filename"])
        for r in routes
        if "filename" in r.get("direct_response", {}).get("body", {})
    ]
    assert {file.parent for file in files} == {Path("/srv/web")}
    assert mounted["/srv/web"] == "./web/dist"
    for file in files:
        assert (ROOT / "web" / "dist" / file.name).is_file()


def test_envoy_forwards_to_the_app_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    cluster = config.load_template()["static_resources"]["clusters"][0]
    upstream = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    address = upstream["address"]["socket_address"]
    assert address["address"] in services
    app = services[address["address"]]
    assert app["environment"]["ATOMCHAT_GRPC_PORT"] == str(address["port_value"])
    assert app["environment"]["ATOMCHAT_HOST"] == "0.0.0.0"
    listener = config.load_template()["static_resources"]["listeners"][0]["address"]
    port = listener["socket_address"]["port_value"]
    assert services["envoy"]["ports"] == [f"127.0.0.1:{port}:8080"]
    assert app["ports"] == ["127.0.0.1:50051-50060:50051"], "one host port per replica"


def test_the_app_scales_behind_envoy(compose: dict[str, Any]) -> None:
    """`docker compose up --scale app=N`: the service's name resolves to every container,
    each a host of Envoy's cluster, health-checked; none publishes a fixed host port."""
    cluster = config.load_template()["static_resources"]["clusters"][0]
    assert cluster["type"] == "STRICT_DNS"
    assert cluster["health_checks"][0]["grpc_health_check"] == {}
    app = compose["services"]["app"]
    assert "container_name" not in app
    for published in app["ports"]:
        host_ports = published.split(":")[-2]
        first, _, last = host_ports.partition("-")
        assert last, "a range, so that replicas do not collide"
        assert int(last) > int(first)


def test_the_app_believes_the_client_address_from_envoy_alone(compose: dict[str, Any]) -> None:
    envoy_address = ipaddress.ip_address(
        compose["services"]["envoy"]["networks"]["default"]["ipv4_address"]
    )
    subnet = ipaddress.ip_network(compose["networks"]["default"]["ipam"]["config"][0]["subnet"])
    assert envoy_address in subnet
    settings = Settings.from_environment(compose["services"]["app"]["environment"])
    assert settings.trusted_proxies == (ipaddress.ip_network(envoy_address),)
    gateway = next(subnet.hosts())
    assert not any(gateway in network for network in settings.trusted_proxies)


def test_migrations_and_the_demo_data_run_once_before_the_app_serves(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    migrate, app = services["migrate"], services["app"]
    script = " ".join(migrate["command"][2].split())
    assert migrate["command"][:2] == ["sh", "-c"]
    assert script == (
        'atomchat migrate && if [ "${ATOMCHAT_SEED_DEMO:-0}" = 1 ]; then atomchat seed; fi'
    )
    assert app["command"] == ["atomchat", "serve", "--no-envoy"]
    assert migrate["environment"]["ATOMCHAT_SEED_DEMO"] == "0"
    for service in (migrate, app):
        assert service["environment"]["DATABASE_URL"].startswith("postgresql://")
        assert "@postgres:5432/" in service["environment"]["DATABASE_URL"]
    assert migrate["environment"]["DATABASE_URL"] == app["environment"]["DATABASE_URL"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert app["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "restart" not in migrate, "it runs once"
    assert services["envoy"]["depends_on"]["app"]["condition"] == "service_healthy"
    for name in ("postgres", "app", "envoy"):
        assert services[name]["restart"] == "unless-stopped"
    volume = services["postgres"]["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]


def test_the_jwt_secret_is_required_not_committed(raw_compose: dict[str, Any]) -> None:
    app = raw_compose["services"]["app"]["environment"]
    assert app["ATOMCHAT_JWT_SECRET"].startswith("${ATOMCHAT_JWT_SECRET:?")
    with pytest.raises(MissingVariable, match="ATOMCHAT_JWT_SECRET"):
        interpolate(raw_compose, {})
    assert app["ATOMCHAT_ENV"] == "production", "a short secret is refused too"


def test_published_ports_are_on_loopback_unless_configured(raw_compose: dict[str, Any]) -> None:
    opened = interpolate(raw_compose, {**COMPOSE_ENVIRONMENT, "ATOMCHAT_PUBLISH": "0.0.0.0"})
    assert opened["services"]["envoy"]["ports"] == ["0.0.0.0:8080:8080"]
    assert "ports" not in raw_compose["services"]["postgres"]


async def test_the_postgres_health_check_asks_over_tcp(
    compose: dict[str, Any], postgres_server_url: str
) -> None:
    """The image's init phase listens on its socket only: a TCP check waits for the real
    server. Run here against the local PostgreSQL's port."""
    test = compose["services"]["postgres"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    command = test[1:]
    assert command[command.index("--host") + 1] == "127.0.0.1"
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is not installed here")
    port = str(make_url(postgres_server_url).port or 5432)
    checked = await run(*command, "--port", port, merge_output=True)
    assert checked.returncode == 0, checked.output


def app_environment(
    compose: dict[str, Any], database_url: str, *, service: str = "app", **changes: str
) -> dict[str, str]:
    """A container's environment (the app's unless told), pointed at a local database
    and free ports."""
    environment = {
        key: str(value) for key, value in compose["services"][service]["environment"].items()
    }
    environment.update(
        DATABASE_URL=database_url, ATOMCHAT_HOST="127.0.0.1", ATOMCHAT_GRPC_PORT="0", **changes
    )
    bin_dir = str(Path(sys.executable).parent)
    return child_environment(**environment, PATH=bin_dir + os.pathsep + os.environ["PATH"])


async def login_moderator(port: int) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            await Api(channel).users.Login(
                users_pb2.LoginRequest(username="moderator", password="1234")
            )
        except grpc.aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize(
    ("seed_demo", "login"), [("1", grpc.StatusCode.OK), ("0", grpc.StatusCode.UNAUTHENTICATED)]
)
async def test_the_app_containers_commands_run_in_order_on_an_empty_database(
    compose: dict[str, Any],
    postgres_server_url: str,
    tmp_path: Path,
    seed_demo: str,
    login: grpc.StatusCode,
) -> None:
    rendered = interpolate(
        yaml.safe_load((ROOT / "docker-compose.yml").read_text("utf-8")),
        {**COMPOSE_ENVIRONMENT, "ATOMCHAT_SEED_DEMO": seed_demo},
    )
    port_file = tmp_path / "ports.json"
    async with fresh_database(postgres_server_url, migrated=False) as url:
        migrated = await run(
            *rendered["services"]["migrate"]["command"],
            env=app_environment(rendered, url, service="migrate"),
            merge_output=True,
        )
        assert migrated.returncode == 0, migrated.output
        environment = app_environment(rendered, url, ATOMCHAT_PORT_FILE=str(port_file))
        async with running(
            rendered["services"]["app"]["command"], environment=environment, port_file=port_file
        ) as server:
            test = compose["services"]["app"]["healthcheck"]["test"]
            script = test[3].replace("127.0.0.1:50051", f"127.0.0.1:{server.grpc_port}")
            checked = await run(sys.executable, "-c", script, merge_output=True)
            assert checked.returncode == 0, checked.output
            assert await login_moderator(server.grpc_port) == login


@contextlib.asynccontextmanager
async def forwarding(port: int, target_host: str, target_port: int) -> AsyncIterator[None]:
    """A TCP forwarder on `port` (a database that comes up late)."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(target_host, target_port)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    server = await asyncio.start_server(accept, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()


async def test_migrate_waits_for_a_database_that_is_still_starting(
    compose: dict[str, Any], postgres_server_url: str
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        late_port = probe.getsockname()[1]
    real = make_url(postgres_server_url)
    async with fresh_database(postgres_server_url, migrated=False) as url:
        late_url = make_url(url).set(host="127.0.0.1", port=late_port).render_as_string(False)
        migrate = await asyncio.create_subprocess_exec(
            tool("atomchat"),
            "migrate",
            env=app_environment(compose, late_url, service="migrate"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert migrate.stdout is not None
        try:
            async with asyncio.timeout(30):
                while b"waiting for PostgreSQL" not in await migrate.stdout.readline():
                    pass
            async with forwarding(late_port, real.host or "127.0.0.1", real.port or 5432):
                async with asyncio.timeout(60):
                    output = (await migrate.stdout.read()).decode()
                    assert await migrate.wait() == 0, output
        finally:
            if migrate.returncode is None:
                migrate.kill()
                await migrate.wait()
    assert "database schema is up to date" in output


async def test_the_app_healthcheck_passes_against_a_serving_server(
    compose: dict[str, Any], app: App
) -> None:
    test = compose["services"]["app"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    script = test[3].replace("127.0.0.1:50051", f"127.0.0.1:{app.port}")
    checked = await run(sys.executable, "-c", script, merge_output=True)
    assert checked.returncode == 0, checked.output


def test_the_image_runs_the_server_alone_as_a_user() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text("utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    tested = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert lines[0] == f"FROM python:{tested}-slim", "the image's Python is the one tested"
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users
    assert users[-1] not in ("root", "0")
    assert lines[-1] == 'CMD ["atomchat", "serve", "--no-envoy"]'
    text = "\n".join(lines)
    assert "ATOMCHAT_HOST=0.0.0.0" in text
    installs = [line for line in lines if "pip install" in line]
    assert installs == ["RUN pip install -c /tmp/atomchat/constraints.txt /tmp/atomchat \\"]
    assert "[local]" not in text, "no embedded PostgreSQL or Envoy wheel in the image"
