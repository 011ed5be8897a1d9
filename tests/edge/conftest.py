"""A real Envoy, started for the test session, in front of the session's server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, async_playwright, expect

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


CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps calling home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BROWSER_TIMEOUT_MS = 15_000


@pytest.fixture(scope="session")
def chromium() -> Path:
    assert CHROMIUM.exists(), (
        f"Chromium is missing at {CHROMIUM}: `apt-get install chromium` (scripts/test does)"
    )
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    """Headless Chromium, shared by every browser test of the session."""
    expect.set_options(timeout=BROWSER_TIMEOUT_MS)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        await browser.close()
