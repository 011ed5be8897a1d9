"""Envoy's admin interface: is it ready, where does a listener listen, its counters,
and what it knows of each upstream host."""

from __future__ import annotations

import asyncio
import http.client
import json
from dataclasses import dataclass
from typing import Any

REQUEST_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Admin:
    host: str
    port: int

    @classmethod
    def parse(cls, address: str) -> Admin | None:
        """From the `host:port` that `envoy --admin-address-path` writes (None
        while the file is still empty or half written)."""
        host, _, port = address.strip().rpartition(":")
        if not host or not port.isdigit():
            return None
        return cls(host.strip("[]"), int(port))

    async def is_ready(self) -> bool:
        """GET /ready answers 200 once the server is initialised and listening."""
        try:
            status, _ = await self._get("/ready")
        except OSError:
            return False
        return status == 200

    async def listener_port(self, name: str) -> int:
        """The port a listener bound, which tells what port 0 became."""
        status, body = await self._get("/listeners?format=json")
        if status != 200:
            raise OSError(f"Envoy admin /listeners answered {status}")
        for listener in json.loads(body)["listener_statuses"]:
            if listener["name"] == name:
                port: int = listener["local_address"]["socket_address"]["port_value"]
                return port
        raise LookupError(f"Envoy has no listener {name!r}")

    async def counter(self, name: str) -> int:
        """The value of one of Envoy's counters (0 when Envoy has not created it yet)."""
        status, body = await self._get("/stats?format=json&usedonly")
        if status != 200:
            raise OSError(f"Envoy admin /stats answered {status}")
        for stat in json.loads(body)["stats"]:
            if stat.get("name") == name:
                return int(stat["value"])
        return 0

    async def hosts(self, cluster: str) -> list[Host]:
        """The hosts of `cluster`: their ports, health and request counts."""
        status, body = await self._get("/clusters?format=json")
        if status != 200:
            raise OSError(f"Envoy admin /clusters answered {status}")
        for found in json.loads(body)["cluster_statuses"]:
            if found["name"] == cluster:
                return [Host.parse(host) for host in found.get("host_statuses", [])]
        raise LookupError(f"Envoy has no cluster {cluster!r}")

    async def _get(self, path: str) -> tuple[int, bytes]:
        return await asyncio.to_thread(self._get_blocking, path)

    def _get_blocking(self, path: str) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_SECONDS)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


@dataclass(frozen=True, slots=True)
class Host:
    """One upstream host as Envoy's /clusters shows it."""

    port: int
    # Envoy routes new calls to it (it passed its last health checks).
    healthy: bool
    # Requests and connection attempts Envoy has sent it, failed ones included;
    # requests under way (open streams among them).
    requests: int
    connect_failures: int
    active: int

    @classmethod
    def parse(cls, status: dict[str, Any]) -> Host:
        stats = {stat["name"]: int(stat.get("value", 0)) for stat in status.get("stats", [])}
        health = status.get("health_status", {})
        failed = any(value is True for key, value in health.items() if key.startswith("failed"))
        return cls(
            port=status["address"]["socket_address"]["port_value"],
            healthy=health.get("eds_health_status") == "HEALTHY" and not failed,
            requests=stats.get("rq_total", 0),
            connect_failures=stats.get("cx_connect_fail", 0),
            active=stats.get("rq_active", 0),
        )
