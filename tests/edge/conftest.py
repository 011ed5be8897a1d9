"""A real Envoy, started for the test session, in front of the session's server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from atomchat_server.app import App
from tests.edge.edge_support import WEB_DIST, running_envoy


@pytest.fixture(scope="session")
async def envoy_url(app: App, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """Base URL ("http://127.0.0.1:PORT") of Envoy serving the API and web/dist."""
    async with running_envoy(
        grpc_port=app.port, work_dir=tmp_path_factory.mktemp("envoy"), web_dir=WEB_DIST
    ) as envoy:
        yield envoy.url


@pytest.fixture
async def http(envoy_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=envoy_url, timeout=10.0) as client:
        yield client
