"""Chat frames as bytes: each timeline entry serialised once, whatever the number of readers.

ChatStreamResponse and ChatEvent give `message` (2), `heartbeat` (5),
`messages` (6), `update` (7), `typing` (8) and `presence` (9) the same
field numbers, so one encoding serves both. A frame
holding one message is the message's bytes behind the tag of field 2; a
batch is the concatenation of per-message parts behind field 6. The chat
methods are registered with a serializer that passes bytes through.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from atomchat.v1 import chat_pb2
from google.protobuf import any_pb2

from atomchat_server.api import convert
from atomchat_server.domain.entities import ChannelView, MessageView, TimelineEntry
from atomchat_server.domain.kinds import UpdateKind

UPDATE_KINDS = {
    UpdateKind.EDITED: chat_pb2.UPDATE_KIND_EDITED,
    UpdateKind.DELETED: chat_pb2.UPDATE_KIND_DELETED,
    UpdateKind.REACTIONS: chat_pb2.UPDATE_KIND_REACTIONS,
}


def _check_shared_field_numbers() -> None:
    """The frames encoded once for both kinds of stream need the same numbers in both."""
    for name in ("message", "messages", "heartbeat", "joined", "update", "typing", "presence"):
        response = chat_pb2.ChatStreamResponse.DESCRIPTOR.fields_by_name[name].number
        event = chat_pb2.ChatEvent.DESCRIPTOR.fields_by_name[name].number
        if response != event:
            raise ImportError(
                f"ChatStreamResponse.{name} is field {response} but ChatEvent.{name} is {event}"
            )


_check_shared_field_numbers()


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(number: int) -> bytes:
    """The key of a length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2)


_MESSAGE_TAG = _tag(chat_pb2.ChatStreamResponse.MESSAGE_FIELD_NUMBER)
_BATCH_TAG = _tag(chat_pb2.ChatStreamResponse.MESSAGES_FIELD_NUMBER)
_BATCH_ENTRY_TAG = _tag(chat_pb2.MessageBatch.MESSAGES_FIELD_NUMBER)
_UPDATE_TAG = _tag(chat_pb2.ChatStreamResponse.UPDATE_FIELD_NUMBER)
_ACK_TAG = _tag(chat_pb2.ChatStreamResponse.ACK_FIELD_NUMBER)
_ACK_KEY_TAG = _tag(chat_pb2.ChatAck.CLIENT_MESSAGE_ID_FIELD_NUMBER)
_ACK_MESSAGE_TAG = _tag(chat_pb2.ChatAck.MESSAGE_FIELD_NUMBER)
_SHORT = [bytes((size,)) for size in range(0x80)]


def _field(tag: bytes, payload: bytes) -> bytes:
    size = len(payload)
    return tag + (_SHORT[size] if size < 0x80 else _varint(size)) + payload


class _PostedBodies:
    """Messages serialised lately, for their second use.

    A post's ack and the fan-out round that hands the post to every stream
    serialise the same message object, a moment apart and in either order:
    the first keeps the bytes here and the second takes them. Messages from
    other processes are only fanned out; they leave when `size` newer ones
    have come. Kept by object: an entry holds its message, so its id() is
    not reused while it is here. Only a message without reactions is kept,
    as everyone sees it alike (new posts have none).
    """

    __slots__ = ("_bodies", "_size")

    def __init__(self, size: int) -> None:
        self._bodies: dict[int, tuple[MessageView, bytes]] = {}
        self._size = size

    def body(self, message: MessageView) -> bytes:
        bodies = self._bodies
        kept = bodies.pop(id(message), None)
        if kept is not None:
            return kept[1]
        body = convert.message(message).SerializeToString()
        if len(bodies) >= self._size:
            del bodies[next(iter(bodies))]
        bodies[id(message)] = (message, body)
        return body


_posted = _PostedBodies(1024)


def _body(message: MessageView, viewer: int | None) -> bytes:
    """The message as `viewer` sees it, serialised."""
    if message.reactions:
        return convert.message(message, viewer).SerializeToString()
    return _posted.body(message)


@dataclass(frozen=True, slots=True)
class EncodedEntry:
    """A timeline entry encoded once for every stream: as a whole frame, and as a part
    of a batch when everyone sees it alike (`part` is None for an update, and for an
    entry with reactions: each user who reacted sees `me` set, from `personal`)."""

    seq: int
    frame: bytes
    part: bytes | None
    personal: Mapping[int, bytes] | None = None

    def frame_for(self, user_id: int) -> bytes:
        personal = self.personal
        if personal is None:
            return self.frame
        return personal.get(user_id, self.frame)


def _message_frames(body: bytes) -> tuple[bytes, bytes]:
    """A message's frame of its own, and its part of a batch."""
    return _field(_MESSAGE_TAG, body), _field(_BATCH_ENTRY_TAG, body)


def _frames(entry: TimelineEntry, viewer: int | None) -> tuple[bytes, bytes | None]:
    if isinstance(entry, MessageView):
        return _message_frames(convert.message(entry, viewer).SerializeToString())
    update = chat_pb2.ChatUpdate(
        seq=entry.seq, kind=UPDATE_KINDS[entry.kind], message=convert.message(entry.message, viewer)
    )
    return _field(_UPDATE_TAG, update.SerializeToString()), None


def _reactors(entry: TimelineEntry) -> set[int]:
    message = entry if isinstance(entry, MessageView) else entry.message
    return {user for reaction in message.reactions for user in reaction.user_ids}


def encode_entry(entry: TimelineEntry) -> EncodedEntry:
    """Encoded for everyone: each frame once, plus one per user who reacted."""
    reactors = _reactors(entry)
    part: bytes | None
    if not reactors:
        if isinstance(entry, MessageView):
            frame, part = _message_frames(_posted.body(entry))
        else:
            frame, part = _frames(entry, None)
        return EncodedEntry(seq=entry.seq, frame=frame, part=part)
    frame, part = _frames(entry, None)
    personal = {user: _frames(entry, user)[0] for user in reactors}
    return EncodedEntry(seq=entry.seq, frame=frame, part=None, personal=personal)


def encode_for(entry: TimelineEntry, viewer: int) -> EncodedEntry:
    """Encoded for one stream's reader only (history and catch-up, read per stream)."""
    frame, part = _frames(entry, viewer)
    return EncodedEntry(seq=entry.seq, frame=frame, part=part)


def batch_frame(parts: Sequence[bytes]) -> bytes:
    return _field(_BATCH_TAG, b"".join(parts))


def heartbeat_frame() -> bytes:
    beat = chat_pb2.ChatHeartbeat(server_time=convert.timestamp(datetime.now(UTC)))
    return chat_pb2.ChatStreamResponse(heartbeat=beat).SerializeToString()


def joined_frame(channel: ChannelView, last_seq: int, online_user_ids: Sequence[int]) -> bytes:
    joined = chat_pb2.ChatJoined(
        channel=convert.channel(channel), last_seq=last_seq, online_user_ids=online_user_ids
    )
    return chat_pb2.ChatStreamResponse(joined=joined).SerializeToString()


def typing_frame(user_id: int, username: str, expires_at: datetime) -> bytes:
    typing = chat_pb2.TypingNotice(
        user_id=user_id, username=username, expires_at=convert.timestamp(expires_at)
    )
    return chat_pb2.ChatStreamResponse(typing=typing).SerializeToString()


def presence_frame(user_id: int, username: str, online: bool) -> bytes:
    presence = chat_pb2.PresenceNotice(user_id=user_id, username=username, online=online)
    return chat_pb2.ChatStreamResponse(presence=presence).SerializeToString()


def ack_frame(client_message_id: str, message: MessageView, viewer: int) -> bytes:
    """The ack's bytes put together around the message's own, as protobuf would write them
    (without copying the message into a ChatAck and that into a ChatStreamResponse)."""
    ack = _field(_ACK_MESSAGE_TAG, _body(message, viewer))
    if client_message_id:
        ack = _field(_ACK_KEY_TAG, client_message_id.encode()) + ack
    return _field(_ACK_TAG, ack)


def error_frame(
    code: int, message: str, client_message_id: str, details: Sequence[any_pb2.Any] = ()
) -> bytes:
    error = chat_pb2.ChatError(
        code=code, message=message, client_message_id=client_message_id, details=details
    )
    return chat_pb2.ChatStreamResponse(error=error).SerializeToString()


def passthrough(frame: bytes) -> bytes:
    """The response serializer of the chat methods: frames are bytes already."""
    return frame
