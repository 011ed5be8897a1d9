"""What other parts of the system must hear about after a commit.

`emit` does two things inside the caller's transaction: it issues a
PostgreSQL NOTIFY (delivered to every server process only if the transaction
commits) and queues the event for this process's own after-commit dispatch,
which is immediate. Each notification carries the emitting process's origin
so that process can skip its own echo.

Timeline entries (a message, or an update carrying the message's current
state) travel in the notification when they fit PostgreSQL's 8000 byte
payload limit; one too large for it travels as a `TimelineCommitted` range
that receivers read back from the database by seq.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from atomchat_server.db.session_info import ORIGIN_KEY, queue_after_commit
from atomchat_server.domain import timeline_store
from atomchat_server.domain.entities import MessageView, ReactionView, TimelineEntry, UpdateView
from atomchat_server.domain.kinds import UpdateKind

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

NOTIFY_CHANNEL = "atomchat_events"
MAX_PAYLOAD_BYTES = 7900
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class TimelineAppended:
    """New entries of a channel's timeline, in seq order."""

    channel_id: int
    entries: tuple[TimelineEntry, ...]


@dataclass(frozen=True, slots=True)
class TimelineCommitted:
    """Entries first_seq..last_seq exist; read them from the database."""

    channel_id: int
    first_seq: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class UserBlocked:
    user_id: int


@dataclass(frozen=True, slots=True)
class UserUnblocked:
    user_id: int


@dataclass(frozen=True, slots=True)
class MemberAdded:
    channel_id: int
    user_id: int


@dataclass(frozen=True, slots=True)
class MemberRemoved:
    channel_id: int
    user_id: int


@dataclass(frozen=True, slots=True)
class ChannelDeleted:
    channel_id: int


@dataclass(frozen=True, slots=True)
class InboxAppended:
    """The user's inbox has events up to `last_id`."""

    user_id: int
    last_id: int


@dataclass(frozen=True, slots=True)
class ReadMarkerMoved:
    user_id: int
    channel_id: int


# Ephemeral events: sent between processes over the bus, never stored.


@dataclass(frozen=True, slots=True)
class TypingStarted:
    channel_id: int
    user_id: int
    username: str
    # When the notice lapses, in milliseconds since the epoch.
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    """The process `origin` has (or no longer has) a live stream of the user's in the channel."""

    origin: str
    channel_id: int
    user_id: int
    username: str
    online: bool


@dataclass(frozen=True, slots=True)
class PresenceAlive:
    """The process `origin` is running: what it said of presence still holds."""

    origin: str


@dataclass(frozen=True, slots=True)
class PresenceWanted:
    """The process `origin` asks `target` (every process when empty) for a snapshot."""

    origin: str
    target: str


@dataclass(frozen=True, slots=True)
class PresenceSnapshot:
    """Part of everything `origin` holds: [channel_id, user_id, username] each;
    the last part (`complete`) ends it, and it replaces what `origin` said before."""

    origin: str
    entries: list[list[Any]]
    complete: bool


@dataclass(frozen=True, slots=True)
class PresenceGone:
    """The process `origin` is stopping: its streams end."""

    origin: str


Event = (
    TimelineAppended
    | TimelineCommitted
    | UserBlocked
    | UserUnblocked
    | MemberAdded
    | MemberRemoved
    | ChannelDeleted
    | InboxAppended
    | ReadMarkerMoved
    | TypingStarted
    | PresenceChanged
    | PresenceAlive
    | PresenceWanted
    | PresenceSnapshot
    | PresenceGone
)

_NOTIFY = "SELECT pg_notify($1, $2)"


async def emit(session: AsyncSession, event: Event) -> None:
    """NOTIFY every process of `event` in the session's transaction, and hand it to
    this process's on_commit once the session commits."""
    origin = str(session.info.get(ORIGIN_KEY, ""))
    connection = await timeline_store.raw_connection(session)
    for payload in encode(origin, event):
        await connection.execute(_NOTIFY, NOTIFY_CHANNEL, payload)
    queue_after_commit(session, event)


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _moment(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _when(moment: datetime | None) -> int | None:
    return None if moment is None else _micros(moment)


def _message_fields(message: MessageView) -> list[Any]:
    return [
        message.id,
        message.seq,
        message.sender_id,
        message.sender_username,
        message.content,
        _micros(message.created_at),
        message.client_message_id,
        _when(message.edited_at),
        _when(message.deleted_at),
        message.deleted_by,
        message.reply_to_id,
        list(message.mention_user_ids),
        [[reaction.emoji, list(reaction.user_ids)] for reaction in message.reactions],
    ]


def _entry_fields(entry: TimelineEntry) -> list[Any]:
    """A message: [0, fields...]; an update: [kind, seq, fields...]."""
    if isinstance(entry, MessageView):
        return [0, *_message_fields(entry)]
    return [entry.kind.value, entry.seq, *_message_fields(entry.message)]


def _message(channel_id: int, row: list[Any]) -> MessageView:
    def moment(micros: int | None) -> datetime | None:
        return None if micros is None else _moment(micros)

    return MessageView(
        id=row[0],
        channel_id=channel_id,
        seq=row[1],
        sender_id=row[2],
        sender_username=row[3],
        content=row[4],
        created_at=_moment(row[5]),
        client_message_id=row[6],
        edited_at=moment(row[7]),
        deleted_at=moment(row[8]),
        deleted_by=row[9],
        reply_to_id=row[10],
        mention_user_ids=tuple(row[11]),
        reactions=tuple(ReactionView(emoji, tuple(users)) for emoji, users in row[12]),
    )


def _decode_entry(channel_id: int, row: list[Any]) -> TimelineEntry:
    if row[0] == 0:
        return _message(channel_id, row[1:])
    return UpdateView(seq=row[1], kind=UpdateKind(row[0]), message=_message(channel_id, row[2:]))


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _size(text: str) -> int:
    """Bytes of `text` in UTF-8 (what PostgreSQL's payload limit counts)."""
    return len(text) if text.isascii() else len(text.encode())


def encode(origin: str, event: Event) -> list[str]:
    """The notification payloads for one event (several for a large batch).

    Each entry is serialised once: a payload is its event's head, then the
    entries' JSON joined by commas, as json.dumps would write the whole.
    """
    if not isinstance(event, TimelineAppended):
        fields = {name: getattr(event, name) for name in event.__dataclass_fields__}
        return [_dumps({"o": origin, "t": type(event).__name__, **fields})]
    head = _dumps({"o": origin, "t": "TimelineAppended", "c": event.channel_id, "e": []})[:-2]
    tail = "]}"
    room = MAX_PAYLOAD_BYTES - _size(head) - len(tail)
    payloads: list[str] = []
    chunk: list[str] = []
    used = 0
    for entry in event.entries:
        row = json.dumps(_entry_fields(entry), ensure_ascii=False, separators=(",", ":"))
        size = _size(row)
        if chunk and used + 1 + size <= room:
            chunk.append(row)
            used += 1 + size
            continue
        if chunk:
            payloads.append(head + ",".join(chunk) + tail)
            chunk, used = [], 0
        if size <= room:
            chunk, used = [row], size
        else:
            single = TimelineCommitted(event.channel_id, entry.seq, entry.seq)
            payloads.extend(encode(origin, single))
    if chunk:
        payloads.append(head + ",".join(chunk) + tail)
    return payloads


def origin_prefix(origin: str) -> str:
    """How every payload `encode` writes for `origin` begins: a process recognises
    its own notifications by it without decoding them."""
    return _dumps({"o": origin})[:-1] + ","


def decode(payload: str) -> tuple[str, Event]:
    """(origin, event) from a notification payload; ValueError if malformed."""
    try:
        data = json.loads(payload)
        origin = data.pop("o")
        kind = data.pop("t")
        if kind == "TimelineAppended":
            channel_id = data["c"]
            entries = tuple(_decode_entry(channel_id, row) for row in data["e"])
            return origin, TimelineAppended(channel_id, entries)
        event_type = _SIMPLE_EVENTS[kind]
        return origin, event_type(**data)
    except (KeyError, TypeError, IndexError, ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"malformed notification: {payload[:200]!r}") from exc


_SIMPLE_EVENTS: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        TimelineCommitted,
        UserBlocked,
        UserUnblocked,
        MemberAdded,
        MemberRemoved,
        ChannelDeleted,
        InboxAppended,
        ReadMarkerMoved,
        TypingStarted,
        PresenceChanged,
        PresenceAlive,
        PresenceWanted,
        PresenceSnapshot,
        PresenceGone,
    )
}
