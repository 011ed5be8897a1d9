"""The web client's three files, served by Envoy itself at /, /app.js and /app.css."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from atomchat_server.app import App
from tests.edge.edge_support import running_envoy

FILES = {
    "index.html": ("/", "text/html; charset=utf-8", "<!doctype html><title>AtomChat</title>\n"),
    "app.js": ("/app.js", "text/javascript; charset=utf-8", "console.log('Привет');\n"),
    "app.css": ("/app.css", "text/css; charset=utf-8", "body { margin: 0; }\n"),
}


@pytest.fixture(scope="module")
async def web_url(app: App, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    work_dir = tmp_path_factory.mktemp("static")
    web = work_dir / "dist"
    web.mkdir()
    for name, (_, _, body) in FILES.items():
        (web / name).write_text(body, encoding="utf-8")
    async with running_envoy(grpc_port=app.port, work_dir=work_dir, web_dir=web) as envoy:
        yield envoy.url


@pytest.mark.parametrize("name", FILES)
async def test_file_is_served_with_its_content_type(web_url: str, name: str) -> None:
    path, content_type, body = FILES[name]
    async with httpx.AsyncClient(base_url=web_url) as http:
        response = await http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.text == body


async def test_large_files_are_served_whole(app: App, tmp_path: Path) -> None:
    web = tmp_path / "dist"
    web.mkdir()
    bundle = "x" * (3 * 1024 * 1024)
    (web / "app.js").write_text(bundle)
    async with (
        running_envoy(grpc_port=app.port, work_dir=tmp_path, web_dir=web) as envoy,
        httpx.AsyncClient(base_url=envoy.url) as http,
    ):
        response = await http.get("/app.js")
        missing = await http.get("/")
    assert response.status_code == 200
    assert len(response.content) == len(bundle)
    # index.html is not there: its route is left out and / maps to no method.
    assert missing.status_code == 404
