"""The notification payloads of a batch of timeline entries (domain/events.py): within
PostgreSQL's limit, decoded back to the same entries in order, and each entry
serialised once, however many share a payload."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from atomchat_server.domain import events
from atomchat_server.domain.entities import (
    MessageView,
    ReactionView,
    TimelineEntry,
    UpdateView,
)
from atomchat_server.domain.kinds import UpdateKind

CHANNEL = 12
ORIGIN = "origin-1"
POSTED = datetime(2026, 12, 4, 17, 0, 0, 123456, tzinfo=UTC)


def _message(seq: int, content: str) -> MessageView:
    return MessageView(
        id=1000 + seq,
        channel_id=CHANNEL,
        seq=seq,
        sender_id=7,
        sender_username="sender",
        content=content,
        created_at=POSTED,
        client_message_id=f"key-{seq}",
        mention_user_ids=(3, 4) if seq % 5 == 0 else (),
        reactions=(ReactionView("👍", (7, 8)),) if seq % 7 == 0 else (),
    )


def _entries(count: int) -> list[TimelineEntry]:
    entries: list[TimelineEntry] = []
    for seq in range(1, count + 1):
        text = f"message {seq} " + ("привет мир " if seq % 2 else "hello world ") * 8
        message = _message(seq, text)
        if seq % 10 == 0:
            entries.append(UpdateView(seq=seq, kind=UpdateKind.EDITED, message=message))
        else:
            entries.append(message)
    return entries


def _decoded(payloads: list[str]) -> list[events.Event]:
    decoded = []
    for payload in payloads:
        origin, event = events.decode(payload)
        assert origin == ORIGIN
        decoded.append(event)
    return decoded


def test_a_large_batch_is_split_within_the_limit_and_decodes_to_the_same_entries() -> None:
    entries = _entries(300)
    payloads = events.encode(ORIGIN, events.TimelineAppended(CHANNEL, tuple(entries)))
    assert len(payloads) > 5
    assert all(len(payload.encode()) <= events.MAX_PAYLOAD_BYTES for payload in payloads)
    decoded = _decoded(payloads)
    assert all(isinstance(event, events.TimelineAppended) for event in decoded)
    received = [
        entry
        for event in decoded
        if isinstance(event, events.TimelineAppended)
        for entry in event.entries
    ]
    assert received == entries
    # Each payload is full: the next entry would not have fitted.
    for payload, following in zip(payloads, decoded[1:], strict=False):
        assert isinstance(following, events.TimelineAppended)
        grown = json.loads(payload)
        grown["e"].append(events._entry_fields(following.entries[0]))
        assert len(events._dumps(grown).encode()) > events.MAX_PAYLOAD_BYTES


def test_a_payload_is_the_json_of_the_whole_event() -> None:
    entries = _entries(3)
    (payload,) = events.encode(ORIGIN, events.TimelineAppended(CHANNEL, tuple(entries)))
    whole = {
        "o": ORIGIN,
        "t": "TimelineAppended",
        "c": CHANNEL,
        "e": [events._entry_fields(entry) for entry in entries],
    }
    assert payload == json.dumps(whole, ensure_ascii=False, separators=(",", ":"))


def test_an_entry_too_large_for_a_payload_travels_as_a_range_in_its_place() -> None:
    entries: list[TimelineEntry] = [
        _message(1, "small"),
        _message(2, "ы" * 5000),
        _message(3, "small too"),
    ]
    payloads = events.encode(ORIGIN, events.TimelineAppended(CHANNEL, tuple(entries)))
    assert _decoded(payloads) == [
        events.TimelineAppended(CHANNEL, (entries[0],)),
        events.TimelineCommitted(CHANNEL, 2, 2),
        events.TimelineAppended(CHANNEL, (entries[2],)),
    ]


def test_each_entry_is_serialised_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The payloads of 500 entries cost about their own length in JSON, not a
    payload's worth per entry."""
    written = 0
    dumps = json.dumps

    def counting(value: Any, **options: Any) -> str:
        nonlocal written
        text = dumps(value, **options)
        written += len(text)
        return text

    monkeypatch.setattr(json, "dumps", counting)
    payloads = events.encode(ORIGIN, events.TimelineAppended(CHANNEL, tuple(_entries(500))))
    assert written < 1.5 * sum(len(payload) for payload in payloads)


@pytest.mark.parametrize(
    "event",
    [
        events.TimelineAppended(CHANNEL, tuple(_entries(40))),
        events.TimelineAppended(CHANNEL, (_message(2, "ы" * 5000),)),
        events.UserBlocked(5),
        events.PresenceAlive("somewhere-else"),
        events.TypingStarted(CHANNEL, 5, 'quote " and \\ backslash', 1_700_000_000_000),
    ],
)
def test_a_process_knows_its_own_payloads_by_how_they_begin(event: events.Event) -> None:
    for origin, other in [(ORIGIN, "origin-12"), ("origin-12", ORIGIN), ('a"b', "a")]:
        for payload in events.encode(origin, event):
            assert payload.startswith(events.origin_prefix(origin))
            assert not payload.startswith(events.origin_prefix(other))
            assert events.decode(payload)[0] == origin
