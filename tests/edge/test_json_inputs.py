"""JSON requests whose body contradicts their URL."""

from __future__ import annotations

import httpx

from atomchat_server.app import App
from tests.edge.edge_support import bearer
from tests.edge.test_json_api import register
from tests.support import unique


async def test_a_body_naming_another_channel_than_the_url_is_refused(
    http: httpx.AsyncClient,
) -> None:
    token, _ = await register(http, "pathwins")
    mine = await http.post("/v1/channels", json={"name": unique("Mine")}, headers=bearer(token))
    other = await http.post("/v1/channels", json={"name": unique("Other")}, headers=bearer(token))
    mine_id, other_id = mine.json()["id"], other.json()["id"]
    posted = await http.post(
        f"/v1/channels/{mine_id}/messages",
        json={"channel_id": other_id, "content": "where does this go?"},
        headers=bearer(token),
    )
    assert posted.status_code == 400, posted.text
    for channel_id in (mine_id, other_id):
        listed = await http.get(f"/v1/channels/{channel_id}/messages", headers=bearer(token))
        assert listed.json()["messages"] == []
    # The same id in both places is no contradiction.
    agreed = await http.post(
        f"/v1/channels/{mine_id}/messages",
        json={"channel_id": mine_id, "content": "here"},
        headers=bearer(token),
    )
    assert agreed.status_code == 200, agreed.text
    assert agreed.json()["channel_id"] == mine_id


async def test_per_address_limits_count_the_address_envoy_saw_not_one_a_client_claims(
    http: httpx.AsyncClient, app: App
) -> None:
    """The session's server trusts loopback peers: Envoy's appended address wins."""
    seen: list[str] = []
    check = app.limits.check_client

    def recording(address: str) -> None:
        seen.append(address)
        check(address)

    app.limits.check_client = recording  # type: ignore[method-assign]
    try:
        await http.post(
            "/v1/auth/token",
            json={"username": "moderator", "password": "1234"},
            headers={"x-atomchat-client-address": "203.0.113.9", "x-forwarded-for": "192.0.2.9"},
        )
    finally:
        del app.limits.check_client
    assert seen == ["127.0.0.1"]
