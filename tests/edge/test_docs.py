"""/docs and /openapi.json through Envoy: the document served is the checked-in
one, every operation it lists is a route Envoy transcodes, and Swagger UI
(served from this origin only) logs in and calls GET /v1/users/me with the
bearer token."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from playwright.async_api import Browser, expect

from atomchat_server.edge.config import packaged_descriptor
from tests.edge.edge_support import ROOT, json_error
from tests.support import People

OPENAPI = ROOT / "generated" / "openapi.json"
HTTP: Any = annotations_pb2.http


PUBLIC = {("post", "/v1/users"), ("post", "/v1/auth/token")}


def http_rules() -> set[tuple[str, str]]:
    """(verb, path) of every google.api.http rule in the descriptor set Envoy loads."""
    files = descriptor_pb2.FileDescriptorSet.FromString(packaged_descriptor().read_bytes())
    rules: set[tuple[str, str]] = set()
    for file in files.file:
        for service in file.service:
            for method in service.method:
                if method.options.HasExtension(HTTP):
                    rule = method.options.Extensions[HTTP]
                    verb = rule.WhichOneof("pattern")
                    rules.add((verb, getattr(rule, verb)))
    return rules


def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(OPENAPI.read_text("utf-8"))
    return loaded


async def test_the_document_and_swagger_ui_are_served(http: httpx.AsyncClient) -> None:
    served = await http.get("/openapi.json")
    assert served.status_code == 200
    assert served.headers["content-type"] == "application/json"
    assert served.json() == document()
    page = await http.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    for asset in re.findall(r'(?:src|href)="(/docs/[^"]+)"', page.text):
        assert (await http.get(asset)).status_code == 200, asset


async def test_every_documented_operation_is_a_transcoded_route(http: httpx.AsyncClient) -> None:
    """Without a token each protected route answers 401 from the server, never
    Envoy's 404 for a path or method that maps to no gRPC method."""
    spec = document()
    operations: set[tuple[str, str]] = set()
    for path, methods in spec["paths"].items():
        url = re.sub(r"\{[^}]+\}", "1", path)
        for verb, operation in methods.items():
            if operation.get("security") == []:
                continue
            body: dict[str, Any] | None = {} if "requestBody" in operation else None
            response = await http.request(verb.upper(), url, json=body)
            code, _, _ = json_error(response)
            assert (response.status_code, code) == (401, 16), (verb, path, response.text)
            operations.add((verb, path))
    assert operations | PUBLIC == http_rules()


async def test_public_operations_need_no_token(http: httpx.AsyncClient) -> None:
    spec = document()
    public = {
        (verb, path)
        for path, methods in spec["paths"].items()
        for verb, operation in methods.items()
        if operation.get("security") == []
    }
    assert public == PUBLIC
    response = await http.post("/v1/auth/token", json={"username": "user_program", "password": "1"})
    assert json_error(response)[1] == "Invalid authentication credentials"


@pytest.mark.browser
async def test_swagger_ui_logs_in_and_calls_get_me(
    browser: Browser, envoy_url: str, people: People
) -> None:
    person = await people.user("docs")
    context = await browser.new_context(base_url=envoy_url)
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    page = await context.new_page()
    await page.goto("/docs")
    await expect(page.get_by_role("heading", name=re.compile("AtomChat"))).to_be_visible(
        timeout=15_000
    )

    # Log in through the document's own POST /v1/auth/token.
    login = page.locator("#operations-UserService-UserService_Login")
    await login.locator(".opblock-summary-control").click()
    await login.get_by_role("button", name="Try it out").click()
    await login.locator("textarea.body-param__text").fill(
        json.dumps({"username": person.username, "password": person.password})
    )
    await login.get_by_role("button", name="Execute").click()
    answer = login.locator(".live-responses-table .response-col_description pre").first
    await expect(answer).to_contain_text("access_token", timeout=15_000)
    token = json.loads(await answer.inner_text())["access_token"]

    await page.get_by_role("button", name="Authorize").first.click()
    dialog = page.locator(".dialog-ux")
    await dialog.locator("input").fill(token)
    await dialog.get_by_role("button", name="Apply credentials").click()
    await dialog.get_by_role("button", name="Close").click()

    me = page.locator("#operations-UserService-UserService_GetMe")
    await me.locator(".opblock-summary-control").click()
    await me.get_by_role("button", name="Try it out").click()
    await me.get_by_role("button", name="Execute").click()
    body = me.locator(".live-responses-table .response-col_description pre").first
    await expect(body).to_contain_text(person.username, timeout=15_000)
    assert json.loads(await body.inner_text())["id"] == str(person.id)
    assert all(url.startswith(envoy_url + "/") for url in requests), requests
    await context.close()
