"""The load generator's accounting with edits and reactions: `update` frames take
seqs in the same gap-free order as messages (bench/streams.py, bench/senders.py)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import grpc
import pytest
from atomchat.v1 import chat_pb2, resources_pb2

from bench import payload
from bench.streams import Stream
from bench.tracking import ChannelTracker, Window
from devsupport import child_environment, run

CHANNEL = 7


class ScriptedCall:
    """A ChatStream call that yields the frames given, then ends."""

    def __init__(self, frames: list[chat_pb2.ChatStreamResponse]) -> None:
        self._frames = list(frames)

    async def read(self) -> chat_pb2.ChatStreamResponse | object:
        return self._frames.pop(0) if self._frames else grpc.aio.EOF


def _message(seq: int, sent_ns: int, channel_id: int = CHANNEL) -> resources_pb2.Message:
    text = payload.content(payload.tag(channel_id), sent_ns, 0, seq, 100)
    return resources_pb2.Message(id=seq, channel_id=channel_id, seq=seq, content=text)


def _plain(seq: int, sent_ns: int) -> chat_pb2.ChatStreamResponse:
    return chat_pb2.ChatStreamResponse(message=_message(seq, sent_ns))


def _update(
    seq: int, kind: chat_pb2.UpdateKind.ValueType, sent_ns: int, channel_id: int = CHANNEL
) -> chat_pb2.ChatStreamResponse:
    # The message keeps its own (earlier) seq; the update has the channel's next one.
    update = chat_pb2.ChatUpdate(seq=seq, kind=kind, message=_message(1, sent_ns, channel_id))
    return chat_pb2.ChatStreamResponse(update=update)


async def _receive(frames: list[chat_pb2.ChatStreamResponse]) -> tuple[Stream, Window]:
    window = Window()
    window.open_ns = time.monotonic_ns() - 1_000_000_000
    window.close_ns = time.monotonic_ns() + 1_000_000_000
    tracker = ChannelTracker(CHANNEL, streams=1)
    tracker.sent = 10
    stream = Stream(ScriptedCall(frames), tracker, window)  # type: ignore[arg-type]
    stream.closing = True
    await stream.receive()
    return stream, window


async def test_updates_take_seqs_between_messages_and_only_edits_are_timed() -> None:
    now = time.monotonic_ns()
    long_ago = now - 60_000_000_000
    stream, window = await _receive(
        [
            _plain(1, now),
            _update(2, chat_pb2.UPDATE_KIND_EDITED, now),
            chat_pb2.ChatStreamResponse(
                messages=chat_pb2.MessageBatch(messages=[_message(3, now)])
            ),
            # A reaction carries the message as it is: its content's time is old.
            _update(4, chat_pb2.UPDATE_KIND_REACTIONS, long_ago),
            _plain(5, now),
        ]
    )
    assert (stream.next_seq, stream.duplicates, stream.leaks, stream.missing) == (6, 0, 0, set())
    assert stream.tracker.delivered == 5
    assert (window.copies, window.updates, window.frames) == (5, 2, 5)
    # Three messages and one edit timed; the reaction not.
    assert len(window.latencies) == 4
    assert len(window.edit_latencies) == 1
    stream.tracker.last_seq = 5
    assert stream.loss() == 0


async def test_a_missing_repeated_or_foreign_update_is_lost_duplicated_or_leaked() -> None:
    now = time.monotonic_ns()
    stream, _ = await _receive(
        [
            _plain(1, now),
            # seq 2 (an update) never comes; 3 does twice; one of another channel.
            _update(3, chat_pb2.UPDATE_KIND_EDITED, now),
            _update(3, chat_pb2.UPDATE_KIND_EDITED, now),
            _update(4, chat_pb2.UPDATE_KIND_REACTIONS, now, channel_id=CHANNEL + 1),
            _plain(4, now),
        ]
    )
    assert stream.missing == {2}
    assert (stream.duplicates, stream.leaks) == (1, 1)
    assert stream.tracker.delivered == 1
    stream.tracker.last_seq = 5
    assert stream.loss() == 2


@pytest.mark.timeout(300)
async def test_a_timeline_mix_run_delivers_every_update_exactly_once(
    postgres_server_url: str, tmp_path: Path
) -> None:
    completed = await run(
        sys.executable,
        "-m",
        "bench",
        "--scenarios=s10",
        "--modes=0",
        "--timeline-share=0.2",
        "--no-bare",
        "--memory-streams=0",
        "--idle-streams=0",
        "--burst-streams=0",
        "--logins=0",
        "--bar-copies=0",
        "--profile-seconds=0",
        "--warmup=0.5",
        "--duration=1",
        "--attempts=1",
        # Never wait for the machine to quieten: only the accounting is checked.
        "--quiet-cpu=200",
        f"--results={tmp_path}",
        env=child_environment(DATABASE_URL=postgres_server_url),
        timeout=290,
        merge_output=True,
    )
    assert completed.returncode == 0, completed.output
    (saved,) = await asyncio.to_thread(lambda: list(tmp_path.glob("bench-*.json")))
    runs = json.loads(await asyncio.to_thread(saved.read_text))["runs"]
    assert [r["run"] for r in runs] == ["flat", "paced", "flat+tl", "paced+tl"]
    for r in runs:
        assert not r["failure"], r
        assert (r["loss"], r["duplicates"], r["leaks"], r["send_errors"]) == (0, 0, 0, 0), r
        assert r["unacked"] == 0, r
        if r["run"].endswith("+tl"):
            assert min(r["edits"], r["reactions"], r["update_copies"], r["edit_samples"]) > 0, r
            assert not r["call_errors"], r
        else:
            assert (r["edits"], r["reactions"], r["update_copies"]) == (0, 0, 0), r
    assert "Timeline mix (20% of events edits and reactions)" in completed.output
