"""Every Prometheus metric the server exports (SPEC §11), defined once.

The gRPC series carry the names and labels of py-grpc-prometheus (and
go-grpc-prometheus), so existing dashboards work: `grpc_type`,
`grpc_service`, `grpc_method`, and `grpc_code` (the status code's name,
`OK`, `NOT_FOUND`, ...) on `grpc_server_handled_total`.

The hot path pays for counters only, with no label built per message:
labelled series are bound once (per method, per outcome, per limit) and
kept. Histograms are observed per call, per committed batch or per fan-out
round, never per copy of a message.

    grpc_server_started_total           calls started, per method
    grpc_server_handled_total           calls finished, per method and status code
    grpc_server_handling_seconds        call duration, per method (a stream: its life)
    atomchat_streams_open               ChatStream and Subscribe streams open here
    atomchat_messages_posted_total      messages committed here (repeats not counted)
    atomchat_post_batch_size            posts per group commit
    atomchat_commit_seconds             one group commit's transaction, begin to COMMIT
    atomchat_fanout_delay_seconds       from a message's row time (its transaction) to
                                        the fan-out round that queues it to its streams'
                                        writers (a group of a channel's streams,
                                        realtime/hub.py); once per round
    atomchat_fanout_messages_total       posted messages those rounds queued (once per
                                        round that queued it), and the sum
    atomchat_fanout_message_delay_seconds_total  of their delays (a mean per message)
    atomchat_slow_readers_ended_total   streams ended RESOURCE_EXHAUSTED for lagging
    atomchat_bus_reconnects_total       LISTEN connections re-established (and caught up)
    atomchat_logins_total{outcome}      Login calls: success, failure (bad credentials),
                                        limited (a limit or the hash queue), invalid,
                                        error
    atomchat_rate_limited_total{limit}  refusals by a limit of SPEC §10 (limit: the
                                        QuotaFailure subject, limits.Limit)
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.exposition import start_http_server

GRPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")

GRPC_STARTED = Counter(
    "grpc_server_started_total", "Total number of RPCs started on the server.", GRPC_LABELS
)
GRPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "Total number of RPCs completed on the server, regardless of success or failure.",
    (*GRPC_LABELS, "grpc_code"),
)
GRPC_HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Histogram of response latency (seconds) of gRPC that had been application-level "
    "handled by the server.",
    GRPC_LABELS,
)
STREAMS_OPEN = Gauge("atomchat_streams_open", "Chat streams (ChatStream, Subscribe) open.")
MESSAGES_POSTED = Counter("atomchat_messages_posted_total", "Messages committed.")
POST_BATCH_SIZE = Histogram(
    "atomchat_post_batch_size",
    "Posts written by one group commit.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
)
# Fine enough between 1 and 300 ms for a quantile interpolated in a bucket to tell
# a commit's or a round's share of a message's latency (bench/server_metrics.py).
# Observed per batch or per round: a longer bucket list costs nothing per message.
LATENCY_BUCKETS = (
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.04,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    1.0,
    2.5,
)
COMMIT_SECONDS = Histogram(
    "atomchat_commit_seconds",
    "Duration of one group commit (its whole transaction).",
    buckets=LATENCY_BUCKETS,
)
FANOUT_DELAY_SECONDS = Histogram(
    "atomchat_fanout_delay_seconds",
    "From a message's row time to the fan-out round that queues it to its streams.",
    buckets=(*LATENCY_BUCKETS, 5.0),
)
# The fan-out delay of every posted message, not only of each round's oldest:
# a mean per message (sum / count), where the histogram above weighs rounds.
FANOUT_MESSAGES = Counter(
    "atomchat_fanout_messages_total", "Posted messages queued to their streams by fan-out rounds."
)
FANOUT_MESSAGE_DELAY = Counter(
    "atomchat_fanout_message_delay_seconds_total",
    "Sum over those messages of the time from their row time to their round.",
)
INDEX_MERGE_SECONDS = Histogram(
    "atomchat_index_merge_seconds",
    "One merge of the search indexes' pending lists (db/index_upkeep.py).",
    buckets=LATENCY_BUCKETS,
)
INDEX_MERGED_PAGES = Counter(
    "atomchat_index_merged_pages_total", "Pending-list pages those merges took into the indexes."
)
SLOW_READERS_ENDED = Counter(
    "atomchat_slow_readers_ended_total", "Streams ended for falling too far behind."
)
BUS_RECONNECTS = Counter(
    "atomchat_bus_reconnects_total", "LISTEN connections re-established after a loss."
)
LOGINS = Counter("atomchat_logins_total", "Login calls by outcome.", ("outcome",))
RATE_LIMITED = Counter(
    "atomchat_rate_limited_total", "Requests refused by a rate limit or quota.", ("limit",)
)

LOGIN_METHOD = "/atomchat.v1.UserService/Login"
# By the status code's name (this module imports no gRPC: config imports it, and
# gRPC must not be imported before the CLI has set GRPC_ENABLE_FORK_SUPPORT).
_LOGIN_OUTCOMES = {
    "OK": "success",
    "UNAUTHENTICATED": "failure",
    "RESOURCE_EXHAUSTED": "limited",
    "UNAVAILABLE": "limited",
    "INVALID_ARGUMENT": "invalid",
}
LOGIN_OUTCOMES = {code: LOGINS.labels(outcome) for code, outcome in _LOGIN_OUTCOMES.items()}
LOGIN_ERROR = LOGINS.labels("error")
_rate_limited: dict[str, Any] = {}


def count_login(code: str) -> None:
    LOGIN_OUTCOMES.get(code, LOGIN_ERROR).inc()


def count_rate_limited(limit: str) -> None:
    """One refusal by `limit` (a limits.Limit name)."""
    child = _rate_limited.get(limit)
    if child is None:
        child = _rate_limited[limit] = RATE_LIMITED.labels(limit)
    child.inc()


def observe_commit(batch_size: int, seconds: float) -> None:
    POST_BATCH_SIZE.observe(batch_size)
    COMMIT_SECONDS.observe(seconds)


def observe_fanout(entries: Sequence[object]) -> None:
    """A fan-out round went out with `entries` (timeline entries, oldest first). Observed
    when the oldest is a posted message (its row time): an update has no time of its own.

    Each posted message's delay is added to FANOUT_MESSAGE_DELAY too. The messages of
    one commit share their row time, so a delay is computed once per commit in the
    round; per message, only a comparison."""
    if not entries:
        return
    now = time.time()
    created = getattr(entries[0], "created_at", None)
    if isinstance(created, datetime):
        FANOUT_DELAY_SECONDS.observe(max(0.0, now - created.timestamp()))
    count = 0
    total = 0.0
    row_time: datetime | None = None
    delay = 0.0
    for entry in entries:
        created = getattr(entry, "created_at", None)
        if created is None:
            continue
        if created != row_time:
            row_time = created
            delay = max(0.0, now - created.timestamp())
        count += 1
        total += delay
    if count:
        FANOUT_MESSAGES.inc(count)
        FANOUT_MESSAGE_DELAY.inc(total)


def counting_posts(
    on_commit: Callable[[Sequence[object]], None],
) -> Callable[[Sequence[object]], None]:
    """`on_commit` of the poster, counting the messages each committed batch posted
    (new messages only: edits, deletions and reactions are timeline updates)."""
    from atomchat_server.domain.entities import MessageView
    from atomchat_server.domain.events import TimelineAppended

    def committed(emitted: Sequence[object]) -> None:
        posted = sum(
            isinstance(entry, MessageView)
            for event in emitted
            if isinstance(event, TimelineAppended)
            for entry in event.entries
        )
        if posted:
            MESSAGES_POSTED.inc(posted)
        on_commit(emitted)

    return committed


class StreamSource(Protocol):
    """What a hub tells about its subscribers (realtime.hub.Hub)."""

    def channels(self) -> dict[int, int]: ...

    def subscribers(self, channel_id: int) -> Sequence[object]: ...


_stream_sources: weakref.WeakSet[Any] = weakref.WeakSet()


def track_streams(source: StreamSource) -> None:
    """Count, at each scrape, the subscribers of `source` (one hub per server)."""
    _stream_sources.add(source)


def _open_streams() -> float:
    return float(
        sum(
            len(source.subscribers(channel))
            for source in list(_stream_sources)
            for channel in source.channels()
        )
    )


STREAMS_OPEN.set_function(_open_streams)


class MetricsServer:
    """Prometheus' text format on http://host:port/metrics, on a thread of its own."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.requested_port = port
        self.port = 0
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Bind (exclusively: OSError if the port is taken) and serve; returns the port."""
        self._server, self._thread = start_http_server(
            self.requested_port, addr=self.host, registry=REGISTRY
        )
        self.port = int(self._server.server_port)
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
