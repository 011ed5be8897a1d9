"""Envoy's own replies are JSON errors like the service's, and its listener is
bound by one process only (issue 9: items 1 and 9)."""

from __future__ import annotations

import asyncio

import httpx

from atomchat_server.edge import config
from tests.edge.edge_support import json_error


async def test_an_unknown_route_is_a_json_not_found(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/no-such-thing")
    assert response.status_code == 404
    code, message, details = json_error(response)
    assert code == 5
    assert "Could not resolve /v1/no-such-thing" in message
    assert details == []


async def test_unparsable_json_is_a_json_invalid_argument(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/users", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    code, message, _ = json_error(response)
    assert code == 3
    assert message


async def test_an_unknown_query_parameter_is_a_json_invalid_argument(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get("/v1/channels", params={"colour": "red"})
    assert response.status_code == 400
    code, message, _ = json_error(response)
    assert (code, "colour" in message) == (3, True)


async def test_headers_too_large_are_a_json_error(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/channels", headers={"x-padding": "a" * 100_000})
    assert response.status_code == 431
    code, message, _ = json_error(response)
    assert code == 3
    assert message


def test_the_listener_is_bound_without_port_reuse() -> None:
    listener = config.load_template()["static_resources"]["listeners"][0]
    assert listener["enable_reuse_port"] is False


async def test_a_body_declared_over_the_limit_is_refused_before_it_is_read(
    envoy_url: str,
) -> None:
    host, port = envoy_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"POST /v1/auth/token HTTP/1.1\r\nhost: atomchat\r\n"
            b"content-type: application/json\r\ncontent-length: 5000000\r\n\r\n{"
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status_line, *header_lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in header_lines if line)
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
    finally:
        writer.close()
    response = httpx.Response(413, headers=headers, content=body)
    assert status_line.split(" ")[1] == "413"
    code, message, _ = json_error(response)
    assert (code, message) == (3, "Request body too large: at most 1 MiB")


async def test_a_body_just_under_the_limit_reaches_the_service(http: httpx.AsyncClient) -> None:
    body = b'{"username": "nobody", "password": "' + b"a" * 1_048_000 + b'"}'
    response = await http.post(
        "/v1/auth/token", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    code, message, details = json_error(response)
    assert code == 3
    assert "password at most 128" in message
    assert details, "the service's errors carry details; Envoy's own do not"
