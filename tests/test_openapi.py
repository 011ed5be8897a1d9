"""generated/openapi.json (scripts/generate_openapi.py): made from the protos'
HTTP rules and comments, every reference resolves, and the JSON forms are the
ones Envoy's transcoder prints. Its freshness is checked with the rest of
generated/ (tests/test_proto.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SPEC: dict[str, Any] = json.loads((ROOT / "generated" / "openapi.json").read_text("utf-8"))


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for value in node.values():
            yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def test_every_reference_resolves() -> None:
    for reference in set(references(SPEC)):
        node: Any = SPEC
        for part in reference.removeprefix("#/").split("/"):
            node = node[part]
        assert isinstance(node, dict), reference


def test_operations_carry_the_protos_comments_and_grpc_names() -> None:
    get_me = SPEC["paths"]["/v1/users/me"]["get"]
    assert get_me["summary"] == "The caller's own profile"
    assert get_me["description"].endswith("gRPC: `atomchat.v1.UserService.GetMe`")
    block = SPEC["paths"]["/v1/users/{user_id}:block"]["post"]
    assert block["parameters"][0] == {
        "name": "user_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "int64"},
    }
    search = SPEC["paths"]["/v1/messages:search"]["get"]
    query = {p["name"]: p for p in search["parameters"]}
    assert set(query) == {"query", "channel_id", "page_size", "page_token"}
    assert "web-search syntax" in query["query"]["description"]


def test_schemas_use_the_transcoders_json_forms() -> None:
    schemas = SPEC["components"]["schemas"]
    message = schemas["Message"]["properties"]
    assert message["id"] == {"type": "string", "format": "int64"}
    assert message["created_at"]["format"] == "date-time"
    assert message["reactions"]["items"] == {"$ref": "#/components/schemas/ReactionCount"}
    assert schemas["Role"]["enum"] == ["ROLE_UNSPECIFIED", "ROLE_USER", "ROLE_MODERATOR"]
    assert "At most one of: `joined`" in schemas["ChatEvent"]["description"]
    status = SPEC["components"]["responses"]["Error"]["content"]["application/json"]["schema"]
    assert status == {"$ref": "#/components/schemas/google.rpc.Status"}
    events = SPEC["paths"]["/v1/channels/{channel_id}/events"]["get"]["responses"]["200"]
    assert events["content"] == {
        "text/event-stream": {"schema": {"$ref": "#/components/schemas/ChatEvent"}}
    }


def test_bearer_authentication_except_register_and_login() -> None:
    assert SPEC["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert SPEC["security"] == [{"bearer": []}]
    assert SPEC["servers"] == [{"url": "/"}]
    assert SPEC["paths"]["/v1/users"]["post"]["security"] == []
    assert SPEC["paths"]["/v1/auth/token"]["post"]["security"] == []
