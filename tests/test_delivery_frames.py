"""How a stream's writer frames timeline entries: messages everyone sees alike in
batches of at most max_batch, every other entry in a frame of its own as its reader
sees it, all in seq order."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from atomchat_server.api.wire import EncodedEntry
from atomchat_server.domain import errors
from atomchat_server.realtime.delivery import Delivery, Encoded, Framing
from atomchat_server.realtime.hub import Subscriber

READER = 7


def _message(seq: int) -> EncodedEntry:
    return EncodedEntry(seq=seq, frame=f"m{seq}".encode(), part=f"p{seq}".encode())


def _update(seq: int) -> EncodedEntry:
    return EncodedEntry(seq=seq, frame=f"u{seq}".encode(), part=None)


def _reacted(seq: int, reactor: int) -> EncodedEntry:
    return EncodedEntry(
        seq=seq, frame=f"r{seq}".encode(), part=None, personal={reactor: f"mine{seq}".encode()}
    )


def _batch(parts: Sequence[bytes]) -> bytes:
    return b"[" + b",".join(parts) + b"]"


async def _frames(entries: Sequence[EncodedEntry], max_batch: int) -> list[bytes]:
    subscriber: Subscriber[Encoded] = Subscriber(1, READER, is_moderator=False, limit=100)
    subscriber.close(errors.ResourceExhausted("done", reason=errors.Reason.SUBSCRIBER_TOO_SLOW))
    written: list[bytes] = []

    async def write(frame: bytes) -> None:
        written.append(frame)

    async def fetch(first: int, last: int) -> Sequence[EncodedEntry]:
        return []

    delivery = Delivery(
        subscriber,
        start_after=0,
        fetch=fetch,
        write=write,
        framing=Framing(batch=_batch, heartbeat=lambda: b"beat"),
        max_batch=max_batch,
    )
    with pytest.raises(errors.ResourceExhausted):
        await delivery.run(history=entries, catch_up_to=0)
    return written


async def test_one_frame_per_entry_without_batches() -> None:
    entries = [_message(1), _update(2), _reacted(3, READER), _reacted(4, 99)]
    assert await _frames(entries, 0) == [b"m1", b"u2", b"mine3", b"r4"]


async def test_messages_go_in_batches_of_at_most_max_batch() -> None:
    entries = [_message(seq) for seq in range(1, 8)]
    assert await _frames(entries, 3) == [b"[p1,p2,p3]", b"[p4,p5,p6]", b"m7"]


async def test_updates_and_reacted_entries_go_alone_between_batches_in_order() -> None:
    entries = [
        _message(1),
        _message(2),
        _update(3),
        _message(4),
        _reacted(5, READER),
        _reacted(6, 99),
        _message(7),
        _message(8),
        _message(9),
    ]
    assert await _frames(entries, 4) == [
        b"[p1,p2]",
        b"u3",
        b"m4",
        b"mine5",
        b"r6",
        b"[p7,p8]",
        b"m9",
    ]
