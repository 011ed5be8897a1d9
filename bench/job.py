"""What the orchestrator asks a load generator to do, and what it reports back.

Both travel as JSON: the job on the generator's standard input, the result
as its last line of output.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ChannelJob:
    channel_id: int
    # One bearer token per stream; the first `senders` streams also send.
    tokens: list[str]
    senders: int


@dataclass(frozen=True, slots=True)
class LoginJob:
    usernames: list[str]
    password: str
    concurrency: int


@dataclass(frozen=True, slots=True)
class Job:
    target: str
    server_pid: int
    database: str
    channels: list[ChannelJob]
    max_batch: int
    # Messages per second per channel, shared by its senders; None is flat out.
    rate: float | None
    # Messages of one channel sent but not yet received by all its streams.
    window: int
    # Sends of one sender not yet acknowledged.
    ack_window: int
    warmup: float
    duration: float
    payload: int
    streams_per_connection: int
    logins: LoginJob | None = None
    # Soak: report every this many seconds of the window (0: one window, no reports).
    report_every: float = 0.0
    # Share of each sender's events that are edits and reactions (bench/senders.py).
    timeline_share: float = 0.0
    # The database to count the run's messages in (bench/persisted.py); "" counts none.
    database_url: str = ""

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, text: str) -> Job:
        raw = json.loads(text)
        channels = [ChannelJob(**channel) for channel in raw.pop("channels")]
        logins = raw.pop("logins")
        return cls(
            channels=channels, logins=LoginJob(**logins) if logins is not None else None, **raw
        )


@dataclass(slots=True)
class Result:
    """One run's figures; latencies in milliseconds, CPU in percent of one core."""

    seconds: float = 0.0
    # Copies of every seq (messages and updates), and of the updates alone.
    copies: int = 0
    frames: int = 0
    update_copies: int = 0
    # Copies divided by the streams of a channel: messages delivered.
    messages: float = 0.0
    latency_samples: int = 0
    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    max: float = 0.0
    # Edits' own latency (they are in the percentiles above too).
    edit_samples: int = 0
    edit_p50: float = 0.0
    edit_p99: float = 0.0
    # Edits and reactions the senders made; calls that failed, by status.
    edits: int = 0
    reactions: int = 0
    call_errors: dict[str, int] = field(default_factory=dict)
    # Acks received inside the window, and their send-to-ack latency.
    acks: int = 0
    ack_samples: int = 0
    ack_p50: float = 0.0
    ack_p99: float = 0.0
    # Latencies (copies, and acks) at stats.CDF_FRACTIONS, for the CDF pictures.
    cdf: list[float] = field(default_factory=list)
    ack_cdf: list[float] = field(default_factory=list)
    # Where a message's time goes, each stage {"n", "p50", "p99", "mean"} (ms, batch
    # sizes in posts): from the generator, send_row (send to the row time, created_at),
    # send_ack, row_client (row time to a copy's receipt, sampled: tracking.ROW_SAMPLE)
    # and send_client (every copy, as p50/p99 above); from the server's metrics over
    # the window (bench/server_metrics.py), commit, row_fanout (each round's oldest
    # message) and batch_size, and row_fanout_each (every message's; n and mean only).
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    # Rows counted in the database (when the job names it): committed inside
    # the window, and in all after every send was answered, beside the sends
    # acked in all (each stored one message; edits and reactions store none).
    rows_counted: bool = False
    persisted: int = 0
    rows_after: int = 0
    acked_total: int = 0
    loss: int = 0
    duplicates: int = 0
    leaks: int = 0
    out_of_order: int = 0
    sends: int = 0
    send_errors: int = 0
    # The sends the server refused on their streams, by status code.
    send_refusals: dict[str, int] = field(default_factory=dict)
    unacked: int = 0
    stream_errors: dict[str, int] = field(default_factory=dict)
    window_stalls: int = 0
    server_cpu: float = 0.0
    database_cpu: float = 0.0
    generator_cpu: float = 0.0
    # The rest of the machine (other people's jobs): busy CPU minus the three above.
    other_cpu: float = 0.0
    logins: int = 0
    login_errors: dict[str, int] = field(default_factory=dict)
    load_average: float = 0.0
    failure: str = ""
    # A soak's reports, one per interval (bench/loadgen.py).
    intervals: list[dict[str, Any]] = field(default_factory=list)

    @property
    def copies_per_second(self) -> float:
        return self.copies / self.seconds if self.seconds else 0.0

    @property
    def copies_per_frame(self) -> float:
        return self.copies / self.frames if self.frames else 0.0

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    @property
    def acks_per_second(self) -> float:
        return self.acks / self.seconds if self.seconds else 0.0

    @property
    def persisted_per_second(self) -> float:
        return self.persisted / self.seconds if self.seconds else 0.0

    @property
    def logins_per_second(self) -> float:
        return self.logins / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["copies_per_second"] = round(self.copies_per_second, 1)
        data["messages_per_second"] = round(self.messages_per_second, 1)
        data["copies_per_frame"] = round(self.copies_per_frame, 2)
        data["logins_per_second"] = round(self.logins_per_second, 2)
        data["acks_per_second"] = round(self.acks_per_second, 1)
        data["persisted_per_second"] = round(self.persisted_per_second, 1)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        names = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in data.items() if key in names})
