"""Message content that carries its own measurement: channel, send time, sender, sequence.

Fixed-width decimal fields at the start, padding after, so a receiver reads
what it needs by slicing, without splitting or parsing the whole text.
"""

from __future__ import annotations

TAG_END = 8
SENT_END = TAG_END + 20
SENDER_END = SENT_END + 4
HEADER = SENDER_END + 9


def tag(channel_id: int) -> str:
    """The prefix every message of this channel starts with."""
    return f"{channel_id:08d}"


def content(channel_tag: str, sent_ns: int, sender: int, sequence: int, size: int) -> str:
    header = f"{channel_tag}{sent_ns:020d}{sender:04d}{sequence:09d}"
    return header + "x" * max(0, size - HEADER)


def sent_ns(text: str) -> int:
    return int(text[TAG_END:SENT_END])
