"""docker-compose.yml against the compose specification's schema, and the
compose setup against envoy.yaml and the server it fronts.

No Docker engine runs here: the images are not pulled or built, so these
checks stop at what the files say."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from atomchat_server.app import App
from atomchat_server.edge import config
from atomchat_server.edge.envoy import envoy_binary
from devsupport import run, tool
from tests.edge.edge_support import ROOT


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text("utf-8"))
    return loaded


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
        Path(r["direct_response"]["body"]["filename"]) for r in routes if "direct_response" in r
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
    assert f"{listener['socket_address']['port_value']}:8080" in services["envoy"]["ports"]
    assert "50051:50051" in app["ports"]


def test_the_app_migrates_seeds_and_serves_without_envoy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    app = services["app"]
    script = app["command"][-1]
    assert script == "atomchat migrate && atomchat seed && exec atomchat serve --no-envoy"
    assert app["environment"]["DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in app["environment"]["DATABASE_URL"]
    assert app["environment"]["ATOMCHAT_JWT_SECRET"]
    assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["envoy"]["depends_on"]["app"]["condition"] == "service_healthy"
    postgres = services["postgres"]
    assert "pg_isready" in postgres["healthcheck"]["test"]
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]


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
    assert re.fullmatch(r"FROM python:3\.1[12]-slim", lines[0])
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users
    assert users[-1] not in ("root", "0")
    assert lines[-1] == 'CMD ["atomchat", "serve", "--no-envoy"]'
    assert "ATOMCHAT_HOST=0.0.0.0" in "\n".join(lines)
