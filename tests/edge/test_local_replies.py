"""Envoy's own replies are JSON errors like the service's, and its listener is
bound by one process only (issue 9: items 1 and 9)."""

from __future__ import annotations

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
