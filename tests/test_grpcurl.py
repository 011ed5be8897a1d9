"""grpcurl against the running server: reflection, a login, a call with the token, an error."""

from __future__ import annotations

import json

import pytest

from atomchat_server.app import SERVICE_NAMES, App
from devsupport import Completed, run_grpcurl


async def grpcurl(app: App, *args: str, options: tuple[str, ...] = ()) -> Completed:
    """`grpcurl -plaintext [options] ADDRESS [args]`, not blocking the loop that serves it."""
    return await run_grpcurl("-plaintext", *options, f"127.0.0.1:{app.port}", *args)


async def login(app: App, username: str, password: str) -> Completed:
    body = json.dumps({"username": username, "password": password})
    return await grpcurl(app, "atomchat.v1.UserService/Login", options=("-d", body))


async def test_grpcurl_lists_the_services_through_reflection(app: App) -> None:
    listed = await grpcurl(app, "list")
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) == {
        *SERVICE_NAMES,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }


async def test_grpcurl_lists_the_methods_of_a_service(app: App) -> None:
    listed = await grpcurl(app, "list", "atomchat.v1.UserService")
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) == {
        f"atomchat.v1.UserService.{name}"
        for name in ("Register", "Login", "GetMe", "LookupUser", "BlockUser", "UnblockUser")
    }


async def test_grpcurl_logs_in_as_the_seeded_moderator(app: App) -> None:
    result = await login(app, "moderator", "1234")
    assert result.returncode == 0, result.stderr
    response = result.json()
    assert response["access_token"]
    assert response["token_type"] == "bearer"
    assert response["expires_in"] == "1200"  # int64 is a string in proto JSON
    assert response["user"]["username"] == "moderator"
    assert response["user"]["role"] == "ROLE_MODERATOR"


async def test_grpcurl_calls_with_the_token_it_got(app: App) -> None:
    token = (await login(app, "moderator", "1234")).json()["access_token"]
    result = await grpcurl(
        app,
        "atomchat.v1.UserService/GetMe",
        options=("-H", f"authorization: Bearer {token}", "-d", "{}"),
    )
    assert result.returncode == 0, result.stderr
    assert result.json()["username"] == "moderator"


@pytest.mark.parametrize("password", ["wrong", ""])
async def test_grpcurl_shows_a_failed_login(app: App, password: str) -> None:
    result = await login(app, "moderator", password)
    assert result.returncode != 0
    assert "Code: Unauthenticated" in result.stderr
    assert "Message: Invalid authentication credentials" in result.stderr
