"""JSON requests whose body contradicts their URL."""

from __future__ import annotations

import httpx

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
