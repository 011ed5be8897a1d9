"""Rendering envoy.yaml for a local run.

The repository's envoy.yaml is written for docker-compose (upstream `app:50051`,
the descriptor in /etc/envoy, the web client in /srv/web). A local run loads
the same file, shipped in this package, and changes only what differs here:
the admin and listener addresses, the upstream addresses (one endpoint per
replica; a STATIC cluster when they are addresses rather than names), the
descriptor path in every transcoder config, the web client's files, the
unary routes' timeout (derived from ATOMCHAT_DATABASE_TIMEOUT) and, for
tests, the stream idle timeout. Everything else stays as docker-compose
runs it.
"""

from __future__ import annotations

import copy
import importlib
import ipaddress
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

LISTENER = "http"
CLUSTER = "atomchat"
CONNECTION_MANAGER = "envoy.filters.network.http_connection_manager"
TRANSCODER_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder"
)
ADMIN_HOST = "127.0.0.1"
DESCRIPTOR = "atomchat_descriptor.binpb"
# Envoy's bound on a unary call is the server's own plus this: the server
# answers within ATOMCHAT_DATABASE_TIMEOUT whatever the database does, so
# Envoy's timeout fires only for a server that answers nothing at all.
UNARY_TIMEOUT_MARGIN = 2.0
# A route without a timeout: streams last as long as their clients want.
NO_TIMEOUT = "0s"

Config = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Local:
    """Where a local Envoy listens, what it forwards to and what it serves."""

    listen_host: str
    http_port: int
    upstream_host: str
    # One endpoint per gRPC server process (replica), all on upstream_host.
    grpc_ports: tuple[int, ...]
    descriptor: Path
    web_dir: Path | None
    admin_port: int = 0
    stream_idle_timeout: float | None = None
    # Seconds: the unary routes' timeout (None keeps the template's).
    unary_timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Rendered:
    config: Config
    # Web client files the template serves but `web_dir` lacks; their routes
    # are left out, so that the API still runs without a built client.
    missing_web_files: tuple[str, ...]


def load_template() -> Config:
    """envoy.yaml as this package ships it."""
    text = (resources.files("atomchat_server.edge") / "envoy.yaml").read_text("utf-8")
    loaded: Config = yaml.safe_load(text)
    return loaded


def packaged_descriptor() -> Path:
    """The descriptor set (with imports) generated from the protos."""
    for folder in _package_folders("atomchat.v1"):
        if (folder / DESCRIPTOR).is_file():
            return folder / DESCRIPTOR
    raise FileNotFoundError(f"the atomchat.v1 package has no {DESCRIPTOR}")


def packaged_web_dir() -> Path | None:
    """The built web client installed with the package, if there is one.

    An editable install cannot import the data-only package nested in a
    regular one; there the client is found where the checkout keeps it.
    """
    folders = _package_folders("atomchat_server.webapp")
    if folders:
        return folders[0]
    checkout = Path(__file__).resolve().parents[2] / "web" / "dist"
    return checkout if (checkout / "index.html").is_file() else None


def upstream_host(listen_host: str) -> str:
    """How Envoy reaches a gRPC server bound to `listen_host`."""
    try:
        address = ipaddress.ip_address(listen_host)
    except ValueError:
        return listen_host
    if address.is_unspecified:
        return "::1" if address.version == 6 else "127.0.0.1"
    return listen_host


def unary_timeout(database_timeout: float) -> float:
    """Envoy's timeout for unary calls to servers with this ATOMCHAT_DATABASE_TIMEOUT."""
    return database_timeout + UNARY_TIMEOUT_MARGIN


def render(template: Mapping[str, Any], local: Local) -> Rendered:
    config: Config = copy.deepcopy(dict(template))
    _set_address(config["admin"]["address"], ADMIN_HOST, local.admin_port)
    listener = _named(config["static_resources"]["listeners"], LISTENER)
    _set_address(listener["address"], local.listen_host, local.http_port)
    manager = connection_manager(config)
    if local.stream_idle_timeout is not None:
        manager["stream_idle_timeout"] = f"{local.stream_idle_timeout:.3f}s"
    for transcoder in transcoders(config):
        transcoder["proto_descriptor"] = str(local.descriptor)
    missing = _serve_web(manager["route_config"], local.web_dir)
    if local.unary_timeout is not None:
        for route in forwarding_routes(config):
            if route["route"]["timeout"] != NO_TIMEOUT:
                route["route"]["timeout"] = f"{local.unary_timeout:.3f}s"
    cluster = _named(config["static_resources"]["clusters"], CLUSTER)
    group = cluster["load_assignment"]["endpoints"][0]
    model = group["lb_endpoints"][0]
    group["lb_endpoints"] = []
    for port in local.grpc_ports:
        endpoint = copy.deepcopy(model)
        _set_address(endpoint["endpoint"]["address"], local.upstream_host, port)
        group["lb_endpoints"].append(endpoint)
    cluster["load_assignment"]["endpoints"] = [group]
    if _is_address(local.upstream_host):
        # Nothing to resolve: the replicas' addresses are known. (STRICT_DNS,
        # re-resolving each endpoint's literal address every 5 s, was seen to send
        # calls to a replica whose health checks had failed.)
        cluster["type"] = "STATIC"
    return Rendered(config, missing)


def dump(config: Mapping[str, Any]) -> str:
    return yaml.dump(dict(config), Dumper=_PlainDumper, sort_keys=False, allow_unicode=True)


def connection_manager(config: Mapping[str, Any]) -> Config:
    """The HTTP connection manager's typed_config of the listener."""
    listener = _named(config["static_resources"]["listeners"], LISTENER)
    for chain in listener["filter_chains"]:
        for network_filter in chain["filters"]:
            if network_filter["name"] == CONNECTION_MANAGER:
                manager: Config = network_filter["typed_config"]
                return manager
    raise LookupError(f"listener {LISTENER!r} has no {CONNECTION_MANAGER}")


def forwarding_routes(config: Mapping[str, Any]) -> list[Config]:
    """The routes that forward to the gRPC servers (the others answer from disk)."""
    route_config = connection_manager(config)["route_config"]
    return [
        route
        for virtual_host in route_config["virtual_hosts"]
        for route in virtual_host["routes"]
        if "route" in route
    ]


def transcoders(node: Any) -> Iterator[Config]:
    """Every gRPC-JSON transcoder config: the filter's and per-route ones."""
    if isinstance(node, dict):
        if node.get("@type") == TRANSCODER_TYPE:
            yield node
        for value in node.values():
            yield from transcoders(value)
    elif isinstance(node, list):
        for value in node:
            yield from transcoders(value)


def _package_folders(package: str) -> list[Path]:
    """The folders a package (namespace packages included) is made of."""
    try:
        module = importlib.import_module(package)
    except ModuleNotFoundError:
        return []
    return [Path(entry) for entry in getattr(module, "__path__", ()) if Path(entry).is_dir()]


class _PlainDumper(yaml.SafeDumper):
    """Writes shared values in full instead of as YAML anchors and aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _named(items: list[Config], name: str) -> Config:
    for item in items:
        if item.get("name") == name:
            return item
    raise LookupError(f"envoy.yaml has no {name!r}")


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _set_address(address: Config, host: str, port: int) -> None:
    socket_address = address["socket_address"]
    socket_address["address"] = host
    socket_address["port_value"] = port


def _serve_web(route_config: Config, web_dir: Path | None) -> tuple[str, ...]:
    missing: list[str] = []
    for virtual_host in route_config["virtual_hosts"]:
        kept: list[Config] = []
        for route in virtual_host["routes"]:
            body = route.get("direct_response", {}).get("body", {})
            if "filename" not in body:
                kept.append(route)
                continue
            name = PurePosixPath(body["filename"]).name
            path = web_dir / name if web_dir is not None else None
            if path is not None and path.is_file():
                body["filename"] = str(path.resolve())
                kept.append(route)
            else:
                missing.append(name)
        virtual_host["routes"] = kept
    return tuple(missing)
