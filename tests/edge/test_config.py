"""envoy.yaml: the file docker-compose runs and its local rendering are both
valid Envoy configurations, and rendering changes only what differs locally."""

from __future__ import annotations

import re
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from atomchat_server.config import Settings
from atomchat_server.edge import config
from atomchat_server.edge.envoy import envoy_binary
from devsupport import run
from tests.edge.edge_support import ROOT

COMPOSE_DESCRIPTOR = "/etc/envoy/atomchat_descriptor.binpb"
COMPOSE_WEB_DIR = "/srv/web"
WEB_FILES = (
    "index.html",
    "app.js",
    "app.css",
    "docs.html",
    "docs.js",
    "swagger-ui-bundle.js",
    "swagger-ui.css",
    "openapi.json",
)


def web_dir(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in WEB_FILES:
        (folder / name).write_text(f"/* {name} */\n")
    return folder


def local(tmp_path: Path, **changes: Any) -> config.Local:
    values: dict[str, Any] = {
        "listen_host": "127.0.0.1",
        "http_port": 0,
        "upstream_host": "127.0.0.1",
        "grpc_ports": (50123,),
        "descriptor": config.packaged_descriptor(),
        "web_dir": web_dir(tmp_path / "web"),
    }
    values.update(changes)
    return config.Local(**values)


async def envoy_validate(path: Path) -> str:
    validated = await run(
        str(envoy_binary()),
        "--mode",
        "validate",
        "--config-path",
        str(path),
        "--disable-hot-restart",
        "--log-level",
        "warn",
        merge_output=True,
    )
    assert validated.returncode == 0, validated.output
    return validated.output


def test_the_package_ships_the_repository_file() -> None:
    packaged = resources.files("atomchat_server.edge") / "envoy.yaml"
    assert packaged.read_text("utf-8") == (ROOT / "envoy.yaml").read_text("utf-8")


async def test_local_rendering_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "envoy.yaml"
    path.write_text(config.dump(config.render(config.load_template(), local(tmp_path)).config))
    assert "OK" in await envoy_validate(path)


async def test_compose_file_is_valid_with_its_mounts_at_local_paths(tmp_path: Path) -> None:
    # The file as docker-compose mounts it, byte for byte, except for the two
    # mount points (/etc/envoy, /srv/web), which are not on this machine: they
    # point at the same files here. The upstream `app` is a DNS name that
    # validation does not resolve.
    text = (ROOT / "envoy.yaml").read_text("utf-8")
    assert text.count(COMPOSE_DESCRIPTOR) == 2
    assert text.count(COMPOSE_WEB_DIR + "/") == len(WEB_FILES)
    descriptor = tmp_path / "atomchat_descriptor.binpb"
    shutil.copyfile(config.packaged_descriptor(), descriptor)
    web = web_dir(tmp_path / "web")
    path = tmp_path / "envoy.yaml"
    path.write_text(
        text.replace(COMPOSE_DESCRIPTOR, str(descriptor)).replace(COMPOSE_WEB_DIR, str(web))
    )
    assert "OK" in await envoy_validate(path)


def test_rendering_changes_only_the_local_fields(tmp_path: Path) -> None:
    template = config.load_template()
    web = web_dir(tmp_path / "web")
    compose_values = config.Local(
        listen_host="0.0.0.0",
        http_port=8080,
        upstream_host="app",
        grpc_ports=(50051,),
        descriptor=Path(COMPOSE_DESCRIPTOR),
        web_dir=web,
        admin_port=9901,
    )
    rendered = config.render(template, compose_values)
    assert rendered.missing_web_files == ()
    assert config.dump(rendered.config).replace(str(web.resolve()), COMPOSE_WEB_DIR) == (
        config.dump(template)
    )


def test_rendering_sets_addresses_descriptor_web_files_and_idle_timeout(tmp_path: Path) -> None:
    descriptor = tmp_path / "descriptor.binpb"
    settings = local(
        tmp_path,
        listen_host="127.0.0.2",
        http_port=18080,
        upstream_host="127.0.0.3",
        grpc_ports=(15051,),
        descriptor=descriptor,
        stream_idle_timeout=2,
    )
    rendered = config.render(config.load_template(), settings).config

    admin = rendered["admin"]["address"]["socket_address"]
    assert (admin["address"], admin["port_value"]) == ("127.0.0.1", 0)
    listener = rendered["static_resources"]["listeners"][0]["address"]["socket_address"]
    assert (listener["address"], listener["port_value"]) == ("127.0.0.2", 18080)
    cluster = rendered["static_resources"]["clusters"][0]
    upstream = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert upstream["address"]["socket_address"] == {"address": "127.0.0.3", "port_value": 15051}
    manager = config.connection_manager(rendered)
    assert manager["stream_idle_timeout"] == "2.000s"
    descriptors = [t["proto_descriptor"] for t in config.transcoders(rendered)]
    assert descriptors == [str(descriptor), str(descriptor)]
    files = [
        route["direct_response"]["body"]["filename"]
        for route in manager["route_config"]["virtual_hosts"][0]["routes"]
        if "filename" in route.get("direct_response", {}).get("body", {})
    ]
    assert files == [str((tmp_path / "web" / name).resolve()) for name in WEB_FILES]


def test_a_missing_web_client_leaves_the_api_routes(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for web in (empty, None):
        rendered = config.render(config.load_template(), local(tmp_path, web_dir=web))
        assert rendered.missing_web_files == WEB_FILES
        routes = config.connection_manager(rendered.config)["route_config"]["virtual_hosts"][0]
        template = config.connection_manager(config.load_template())["route_config"]
        kept = [
            route["name"]
            for route in template["virtual_hosts"][0]["routes"]
            if "filename" not in route.get("direct_response", {}).get("body", {})
        ]
        assert [route["name"] for route in routes["routes"]] == kept
        assert {"too-large", "events", "stream-chat", "api"} <= set(kept)


@pytest.mark.parametrize(
    ("listen_host", "upstream"),
    [
        ("0.0.0.0", "127.0.0.1"),
        ("::", "::1"),
        ("127.0.0.1", "127.0.0.1"),
        ("10.1.2.3", "10.1.2.3"),
        ("localhost", "localhost"),
    ],
)
def test_envoy_reaches_the_grpc_server_where_it_listens(listen_host: str, upstream: str) -> None:
    assert config.upstream_host(listen_host) == upstream


def test_an_upstream_name_is_resolved(tmp_path: Path) -> None:
    rendered = config.render(config.load_template(), local(tmp_path, upstream_host="localhost"))
    assert rendered.config["static_resources"]["clusters"][0]["type"] == "STRICT_DNS"


STREAMING_PATHS = (
    "/atomchat.v1.ChatService/ChatStream",
    "/atomchat.v1.ChatService/Subscribe",
    "/atomchat.v1.InboxService/StreamInbox",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
)
UNARY_PATHS = (
    "/atomchat.v1.ChatService/SendMessage",
    "/atomchat.v1.UserService/Login",
    "/grpc.health.v1.Health/Check",
)


def route_for(routes: list[dict[str, Any]], path: str) -> dict[str, Any]:
    """The first route whose match takes a request for `path` with no special headers
    (the matches envoy.yaml uses)."""
    for route in routes:
        match = route["match"]
        if "headers" in match:
            continue
        if (
            match.get("path") == path
            or ("prefix" in match and path.startswith(match["prefix"]))
            or ("safe_regex" in match and re.fullmatch(match["safe_regex"]["regex"], path))
        ):
            return route
    raise LookupError(path)


def seconds(duration: str) -> float:
    assert duration.endswith("s")
    return float(duration[:-1])


def test_long_lived_streams_are_not_cut_by_route_timeouts_or_retried() -> None:
    manager = config.connection_manager(config.load_template())
    assert manager["stream_idle_timeout"] == "300s"
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    for path in (*STREAMING_PATHS, "/v1/channels/1/events", "/v1/users/me/events"):
        route = route_for(routes, path)["route"]
        assert route["timeout"] == "0s", path
        assert "max_stream_duration" not in route
        assert "retry_policy" not in route, "a stream is resumed by its client, never replayed"


def test_unary_calls_are_bounded_a_little_above_the_servers_database_timeout() -> None:
    routes = config.forwarding_routes(config.load_template())
    default = Settings().database_timeout
    for path in UNARY_PATHS:
        route = route_for(routes, path)["route"]
        assert seconds(route["timeout"]) == config.unary_timeout(default), path
        assert default < config.unary_timeout(default) <= default + 5


def test_a_local_run_bounds_unary_calls_by_its_own_database_timeout(tmp_path: Path) -> None:
    rendered = config.render(config.load_template(), local(tmp_path, unary_timeout=4.5)).config
    routes = config.forwarding_routes(rendered)
    for path in UNARY_PATHS:
        assert route_for(routes, path)["route"]["timeout"] == "4.500s"
    for path in STREAMING_PATHS:
        assert route_for(routes, path)["route"]["timeout"] == "0s"


def test_unary_calls_are_retried_elsewhere_only_when_no_server_can_have_run_them() -> None:
    routes = config.forwarding_routes(config.load_template())
    for path in UNARY_PATHS:
        policy = route_for(routes, path)["route"]["retry_policy"]
        assert set(policy["retry_on"].split(",")) == {
            "connect-failure",
            "refused-stream",
            "reset-before-request",
        }
        assert policy["num_retries"] >= 1
        predicates = [p["name"] for p in policy["retry_host_predicate"]]
        assert predicates == ["envoy.retry_host_predicates.previous_hosts"]


def test_replicas_are_health_checked_with_grpc_health_every_second() -> None:
    cluster = config.load_template()["static_resources"]["clusters"][0]
    assert cluster["type"] == "STRICT_DNS", "every container `app` resolves to is a host"
    [check] = cluster["health_checks"]
    assert check["grpc_health_check"] == {}
    assert seconds(check["interval"]) == seconds(check["no_traffic_interval"]) == 1
    assert check["unhealthy_threshold"] == 2
    assert check["healthy_threshold"] == 1


async def test_a_local_run_renders_one_endpoint_per_replica(tmp_path: Path) -> None:
    ports = (15051, 15052, 15053)
    rendered = config.render(config.load_template(), local(tmp_path, grpc_ports=ports)).config
    cluster = rendered["static_resources"]["clusters"][0]
    [group] = cluster["load_assignment"]["endpoints"]
    addresses = [e["endpoint"]["address"]["socket_address"] for e in group["lb_endpoints"]]
    assert addresses == [{"address": "127.0.0.1", "port_value": port} for port in ports]
    assert cluster["type"] == "STATIC", "addresses: nothing to resolve"
    assert (
        cluster["health_checks"]
        == config.load_template()["static_resources"]["clusters"][0]["health_checks"]
    )
    path = tmp_path / "envoy.yaml"
    path.write_text(config.dump(rendered))
    assert "OK" in await envoy_validate(path)
