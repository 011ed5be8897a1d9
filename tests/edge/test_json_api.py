"""HTTP/JSON through Envoy's gRPC-JSON transcoder, as curl or a script uses it."""

from __future__ import annotations

from typing import Any

import httpx

from tests.edge.edge_support import bearer, error_reason, json_error
from tests.support import unique


async def register(http: httpx.AsyncClient, prefix: str) -> tuple[str, dict[str, Any]]:
    """Registers and logs in over JSON; returns the token and the user."""
    username = unique(prefix)
    created = await http.post("/v1/users", json={"username": username, "password": "pw-1234"})
    assert created.status_code == 200, created.text
    login = await http.post("/v1/auth/token", json={"username": username, "password": "pw-1234"})
    assert login.status_code == 200, login.text
    body = login.json()
    return body["access_token"], body["user"]


async def test_register_login_and_profile(http: httpx.AsyncClient) -> None:
    username = unique("json")
    created = await http.post("/v1/users", json={"username": username, "password": "pw-1234"})
    assert created.status_code == 200
    assert created.headers["content-type"] == "application/json"
    user = created.json()
    # proto field names, every field printed, int64 as a JSON string.
    assert set(user) == {"id", "username", "role", "is_active", "created_at"}
    assert (user["username"], user["role"], user["is_active"]) == (username, "ROLE_USER", True)
    assert int(user["id"]) > 0

    login = await http.post(
        "/v1/auth/token",
        content=f'{{"username": "{username}", "password": "pw-1234"}}',
        headers={"content-type": "application/json"},
    )
    assert login.status_code == 200
    token = login.json()
    assert token["token_type"] == "bearer"
    assert int(token["expires_in"]) == 20 * 60
    assert token["user"] == user

    me = await http.get("/v1/users/me", headers=bearer(token["access_token"]))
    assert me.status_code == 200
    assert me.json() == user


async def test_channel_join_request_members_and_messages(http: httpx.AsyncClient) -> None:
    owner_token, owner = await register(http, "owner")
    joiner_token, joiner = await register(http, "joiner")
    name = unique("JsonChannel")

    created = await http.post(
        "/v1/channels",
        json={"name": name, "description": "over HTTP"},
        headers=bearer(owner_token),
    )
    assert created.status_code == 200, created.text
    channel = created.json()
    assert (channel["name"], channel["member_count"], channel["owner_id"]) == (name, 1, owner["id"])
    channel_id = channel["id"]

    lookup = await http.get(
        "/v1/channels:lookup", params={"slug": channel["slug"]}, headers=bearer(joiner_token)
    )
    assert lookup.status_code == 200
    assert lookup.json()["owner"]["username"] == owner["username"]

    requested = await http.post(
        f"/v1/channels/{channel_id}/join-requests", json={}, headers=bearer(joiner_token)
    )
    assert requested.status_code == 200, requested.text
    request = requested.json()
    assert (request["status"], request["user_id"], request["username"]) == (
        "JOIN_REQUEST_STATUS_PENDING",
        joiner["id"],
        joiner["username"],
    )

    pending = await http.get(
        f"/v1/channels/{channel_id}/join-requests", headers=bearer(owner_token)
    )
    assert [(r["id"], r["username"]) for r in pending.json()["join_requests"]] == [
        (request["id"], joiner["username"])
    ]
    mine = await http.get("/v1/users/me/join-requests", headers=bearer(joiner_token))
    assert mine.status_code == 200, mine.text
    assert mine.json() == {"join_requests": [request], "next_page_token": ""}

    accepted = await http.post(
        f"/v1/join-requests/{request['id']}:accept", json={}, headers=bearer(owner_token)
    )
    assert accepted.status_code == 200, accepted.text
    assert (accepted.json()["status"], accepted.json()["username"]) == (
        "JOIN_REQUEST_STATUS_ACCEPTED",
        joiner["username"],
    )
    mine = await http.get("/v1/users/me/join-requests", headers=bearer(joiner_token))
    assert mine.json()["join_requests"] == []
    decided = await http.get(
        "/v1/users/me/join-requests",
        params={"status": "JOIN_REQUEST_STATUS_ACCEPTED", "page_size": 1},
        headers=bearer(joiner_token),
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["join_requests"] == [accepted.json()]

    members = await http.get(f"/v1/channels/{channel_id}/members", headers=bearer(joiner_token))
    assert members.status_code == 200
    assert {(m["username"], m["is_owner"]) for m in members.json()["members"]} == {
        (owner["username"], True),
        (joiner["username"], False),
    }

    sent = []
    for text in ("first", "second"):
        response = await http.post(
            f"/v1/channels/{channel_id}/messages",
            json={"content": text, "client_message_id": f"json-{text}"},
            headers=bearer(joiner_token),
        )
        assert response.status_code == 200, response.text
        sent.append(response.json())
    assert [m["content"] for m in sent] == ["first", "second"]
    assert int(sent[1]["seq"]) == int(sent[0]["seq"]) + 1

    page = await http.get(
        f"/v1/channels/{channel_id}/messages",
        params={"page_size": 1},
        headers=bearer(owner_token),
    )
    assert page.status_code == 200
    body = page.json()
    assert [m["content"] for m in body["messages"]] == ["second"]
    assert body["next_page_token"]
    rest = await http.get(
        f"/v1/channels/{channel_id}/messages",
        params={"page_size": 10, "page_token": body["next_page_token"]},
        headers=bearer(owner_token),
    )
    assert [m["content"] for m in rest.json()["messages"]] == ["first"]


async def test_a_user_is_found_by_name(http: httpx.AsyncClient) -> None:
    token, user = await register(http, "finder")
    _, other = await register(http, "found")

    found = await http.get(
        "/v1/users:lookup", params={"username": other["username"].upper()}, headers=bearer(token)
    )
    assert found.status_code == 200, found.text
    assert found.json() == other

    unknown = await http.get(
        "/v1/users:lookup", params={"username": "no_such_user_here"}, headers=bearer(token)
    )
    assert unknown.status_code == 404
    code, message, details = json_error(unknown)
    assert (code, message, error_reason(details)) == (5, "User not found", "USER_NOT_FOUND")

    anonymous = await http.get("/v1/users:lookup", params={"username": user["username"]})
    assert anonymous.status_code == 401


async def test_grpc_errors_become_http_statuses_with_json_bodies(http: httpx.AsyncClient) -> None:
    owner_token, _ = await register(http, "errs")
    outsider_token, outsider = await register(http, "outsider")
    channel = (
        await http.post("/v1/channels", json={"name": unique("Err")}, headers=bearer(owner_token))
    ).json()

    no_token = await http.get("/v1/users/me")
    assert no_token.status_code == 401
    code, _, details = json_error(no_token)
    assert (code, error_reason(details)) == (16, "MISSING_TOKEN")

    bad_password = await http.post(
        "/v1/auth/token", json={"username": outsider["username"], "password": "wrong"}
    )
    assert bad_password.status_code == 401
    assert json_error(bad_password)[:2] == (16, "Invalid authentication credentials")

    not_member = await http.get(
        f"/v1/channels/{channel['id']}/messages", headers=bearer(outsider_token)
    )
    assert not_member.status_code == 403
    assert json_error(not_member)[:2] == (7, "You are not a member of this channel.")

    missing = await http.get(
        "/v1/channels:lookup", params={"slug": "no-such-channel"}, headers=bearer(owner_token)
    )
    assert missing.status_code == 404
    code, message, details = json_error(missing)
    assert (code, message, error_reason(details)) == (5, "Channel not found", "CHANNEL_NOT_FOUND")

    duplicate = await http.post(
        "/v1/users", json={"username": outsider["username"], "password": "pw-1234"}
    )
    assert duplicate.status_code == 409
    assert json_error(duplicate)[:2] == (6, "Username already exists")

    invalid = await http.post("/v1/users", json={"username": "x", "password": "pw-1234"})
    assert invalid.status_code == 400
    code, message, details = json_error(invalid)
    assert code == 3
    assert message
    violations = [
        violation["field"]
        for detail in details
        if detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
        for violation in detail["field_violations"]
    ]
    assert violations == ["username"]


async def test_requests_that_map_to_no_method_are_rejected_by_envoy(
    http: httpx.AsyncClient,
) -> None:
    unknown_path = await http.get("/v1/no-such-thing")
    assert unknown_path.status_code == 404
    assert "Could not resolve" in unknown_path.text

    unknown_parameter = await http.get("/v1/channels", params={"colour": "red"})
    assert unknown_parameter.status_code == 400
    assert "colour" in unknown_parameter.text

    malformed = await http.post(
        "/v1/users", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400
