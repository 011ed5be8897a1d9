"""What the load generator keeps of a send the server refused: its status code,
so that a run tells the database's bound (UNAVAILABLE) from a refusal that is a
fault, and the smoke run can allow the one and not the other."""

from __future__ import annotations

from typing import cast

from atomchat.v1 import chat_pb2
from google.rpc import code_pb2

from bench.senders import Sender
from bench.streams import Call, Stream
from bench.tracking import ChannelTracker, Window


def test_a_refused_send_is_counted_by_its_code() -> None:
    tracker = ChannelTracker(channel_id=1, streams=1)
    sender = Sender(
        Stream(cast(Call, None), tracker, Window()), 0, window=8, ack_window=8, size=100
    )
    for code in (code_pb2.UNAVAILABLE, code_pb2.UNAVAILABLE, code_pb2.PERMISSION_DENIED):
        sender.unacked += 1
        tracker.sent += 1
        sender.refused(chat_pb2.ChatError(code=code, client_message_id="k"))
    assert sender.errors == 3
    assert sender.refusals == {"UNAVAILABLE": 2, "PERMISSION_DENIED": 1}
    assert (sender.unacked, tracker.sent) == (0, 0)
