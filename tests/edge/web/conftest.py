"""The web app in headless Chromium against the session's server behind
Envoy: a browser for the session, pages for people (each in a browser context
of its own, so two people are two browsers), screenshots and the axe scan.

Every page fails its test on a script error or on a request that leaves the
page's origin."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from atomchat.v1 import chat_pb2
from playwright.async_api import (
    Browser,
    BrowserContext,
    Page,
    ViewportSize,
    expect,
)

from tests.edge.edge_support import ROOT
from tests.support import Person

ARTIFACTS = ROOT / "test-artifacts"
AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
TIMEOUT_MS = 15_000
WIDE: ViewportSize = {"width": 1280, "height": 800}
NARROW: ViewportSize = {"width": 390, "height": 844}

pytestmark = pytest.mark.browser

OpenPage = Callable[..., Awaitable[Page]]


@pytest.fixture
async def open_page(browser: Browser, envoy_url: str) -> AsyncIterator[OpenPage]:
    """open_page(viewport=WIDE, locale="en-US"): a new browser (context) on
    Envoy's origin, with one tab."""
    contexts: list[BrowserContext] = []
    errors: list[str] = []
    outside: list[str] = []

    def record(url: str) -> None:
        if not url.startswith((envoy_url + "/", "data:", "blob:")) and url != envoy_url:
            outside.append(url)

    async def opener(viewport: ViewportSize = WIDE, locale: str = "en-US") -> Page:
        context = await browser.new_context(base_url=envoy_url, viewport=viewport, locale=locale)
        context.set_default_timeout(TIMEOUT_MS)
        context.on("request", lambda request: record(request.url))
        contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    yield opener
    for context in contexts:
        await context.close()
    assert errors == [], f"script errors on the page: {errors}"
    assert outside == [], f"requests outside the origin: {outside}"


async def log_in(page: Page, person: Person) -> None:
    await page.goto("/")
    await page.get_by_label("Username").fill(person.username)
    await page.get_by_label("Password").fill(person.password)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#me")).to_have_text(person.username)


def channel_link(page: Page, name: str) -> Any:
    return page.get_by_role("navigation").get_by_role("link", name=name)


async def open_channel(page: Page, channel_id: int, name: str) -> None:
    await page.goto(f"/#/c/{channel_id}")
    await expect(page.locator("#room-title")).to_have_text(name)
    await expect(page.locator("#room-status")).to_have_text("Live")


def message(page: Page, text: str) -> Any:
    """The message whose own content (not a quote of it) holds `text`."""
    content = page.locator(".content", has_text=text)
    return page.locator("#messages .message").filter(has=content)


async def screenshot(page: Page, name: str) -> Path:
    """test-artifacts/web-<name>-<width>.png of the whole viewport."""
    width = (page.viewport_size or WIDE)["width"]
    path = ARTIFACTS / f"web-{name}-{width}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=path)
    return path


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    assert AXE.exists(), "axe-core is missing: run `npm ci --prefix web`"
    await page.add_script_tag(path=AXE)
    result = await page.evaluate("async () => JSON.stringify(await axe.run(document))")
    violations: list[dict[str, Any]] = json.loads(result)["violations"]
    return [v for v in violations if v["impact"] in ("serious", "critical")]


async def post(person: Person, channel_id: int, content: str, **fields: Any) -> Any:
    """A message sent straight to the gRPC server, not through a browser."""
    return await person.api.chat.SendMessage(
        chat_pb2.SendMessageRequest(channel_id=channel_id, content=content, **fields)
    )
