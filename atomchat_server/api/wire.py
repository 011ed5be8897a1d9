"""Chat frames as bytes: each message serialised once, whatever the number of readers.

ChatStreamResponse and ChatEvent give `message` (2), `heartbeat` (5) and
`messages` (6) the same field numbers, so one encoding serves both. A frame
holding one message is the message's bytes behind the tag of field 2; a
batch is the concatenation of per-message parts behind field 6. The chat
methods are registered with a serializer that passes bytes through.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from atomchat.v1 import chat_pb2
from google.protobuf import any_pb2

from atomchat_server.api import convert
from atomchat_server.domain.entities import ChannelView, MessageView

_LENGTH_DELIMITED = 2
_MESSAGE_FIELD = chat_pb2.ChatStreamResponse.MESSAGE_FIELD_NUMBER
_BATCH_FIELD = chat_pb2.ChatStreamResponse.MESSAGES_FIELD_NUMBER
_BATCH_ENTRY_FIELD = chat_pb2.MessageBatch.MESSAGES_FIELD_NUMBER


def _check_shared_field_numbers() -> None:
    """The frames encoded once for both kinds of stream need the same numbers in both."""
    for name in ("message", "messages", "heartbeat", "joined"):
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


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | _LENGTH_DELIMITED) + _varint(len(payload)) + payload


@dataclass(frozen=True, slots=True)
class EncodedMessage:
    seq: int
    frame: bytes
    part: bytes


def encode_message(view: MessageView) -> EncodedMessage:
    body = convert.message(view).SerializeToString()
    return EncodedMessage(
        seq=view.seq,
        frame=_field(_MESSAGE_FIELD, body),
        part=_field(_BATCH_ENTRY_FIELD, body),
    )


def batch_frame(parts: Sequence[bytes]) -> bytes:
    return _field(_BATCH_FIELD, b"".join(parts))


def heartbeat_frame() -> bytes:
    beat = chat_pb2.ChatHeartbeat(server_time=convert.timestamp(datetime.now(UTC)))
    return chat_pb2.ChatStreamResponse(heartbeat=beat).SerializeToString()


def joined_frame(channel: ChannelView) -> bytes:
    joined = chat_pb2.ChatJoined(channel=convert.channel(channel))
    return chat_pb2.ChatStreamResponse(joined=joined).SerializeToString()


def ack_frame(client_message_id: str, message: MessageView) -> bytes:
    ack = chat_pb2.ChatAck(client_message_id=client_message_id, message=convert.message(message))
    return chat_pb2.ChatStreamResponse(ack=ack).SerializeToString()


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
