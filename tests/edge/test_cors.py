"""Browsers on another origin may call the API: preflights pass, and the
headers a grpc-web client reads are exposed."""

from __future__ import annotations

import httpx
import pytest
from atomchat.v1 import users_pb2

from tests.edge.edge_support import grpc_web_frame, grpc_web_headers, parse_grpc_web
from tests.support import People

ORIGIN = "http://chat.example.test:3000"


def header_set(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


@pytest.mark.parametrize(
    ("path", "method", "headers"),
    [
        (
            "/atomchat.v1.ChatService/Subscribe",
            "POST",
            "content-type,x-grpc-web,x-user-agent,grpc-timeout,authorization",
        ),
        ("/v1/channels", "POST", "content-type,authorization"),
        ("/v1/channels/1", "PATCH", "content-type,authorization"),
        ("/v1/channels/1/events", "GET", "authorization"),
    ],
)
async def test_preflight_from_another_origin(
    http: httpx.AsyncClient, path: str, method: str, headers: str
) -> None:
    response = await http.options(
        path,
        headers={
            "origin": ORIGIN,
            "access-control-request-method": method,
            "access-control-request-headers": headers,
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert method.lower() in header_set(response.headers["access-control-allow-methods"])
    assert header_set(headers) <= header_set(response.headers["access-control-allow-headers"])
    assert int(response.headers["access-control-max-age"]) > 0


async def test_grpc_web_response_exposes_grpc_headers(
    http: httpx.AsyncClient, people: People
) -> None:
    person = await people.user("cors")
    response = await http.post(
        "/atomchat.v1.UserService/GetMe",
        content=grpc_web_frame(users_pb2.GetMeRequest().SerializeToString()),
        headers=grpc_web_headers(person.token) | {"origin": ORIGIN},
    )
    assert parse_grpc_web(response).trailers["grpc-status"] == "0"
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert {"grpc-status", "grpc-message", "grpc-status-details-bin"} <= header_set(
        response.headers["access-control-expose-headers"]
    )


async def test_json_response_allows_the_origin(http: httpx.AsyncClient, people: People) -> None:
    person = await people.user("cors_json")
    response = await http.get(
        "/v1/users/me", headers={"origin": ORIGIN, "authorization": f"Bearer {person.token}"}
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
