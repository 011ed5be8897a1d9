"""Every rate and quota the service enforces (SPEC §10), in one place.

    limit                    environment variable            default
    ───────────────────────  ──────────────────────────────  ──────────────────────────────
    login failures per name  ATOMCHAT_LOGIN_FAILURES         5 per 15 min, then backoff
    logins + registrations   ATOMCHAT_AUTH_PER_MINUTE        20 per client address
    messages                 ATOMCHAT_MESSAGE_RATE / _BURST  10/s, bursts of 50, per user
                                                             per channel
    live streams             ATOMCHAT_STREAMS_PER_USER       100 per user
    channels created         ATOMCHAT_CHANNELS_PER_HOUR      10 per user
    password-hash queue      ATOMCHAT_HASH_QUEUE             auth/passwords.py

`0` turns a limit off. A refusal is a `ResourceExhausted` carrying how long
to wait and which limit (RetryInfo and QuotaFailure on the wire), decided
before any expensive work. Counts live in this process: with several
server processes each keeps its own.

Why not a library: `limits` counts in fixed or moving windows, not the token
bucket the message limit needs (a rate plus a burst), and charges every
message a string key and a lock; `aiolimiter` waits instead of refusing and
has no per-key state. A token bucket is a few lines; these are those lines,
with bounded memory (the least recently used keys are forgotten first).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from atomchat_server.domain import errors
from atomchat_server.observability import metrics

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

MAX_KEYS = 100_000
FAILURE_WINDOW_SECONDS = 15 * 60
MAX_BACKOFF_SECONDS = 15 * 60
STREAM_RETRY_SECONDS = 5.0


class Limit(StrEnum):
    """Names of the limits, as QuotaFailure and the metrics call them."""

    LOGIN_FAILURES = "login_failures"
    AUTH_PER_ADDRESS = "auth_per_address"
    MESSAGES = "messages"
    STREAMS = "streams"
    CHANNELS = "channels"
    HASH_QUEUE = "hash_queue"


@dataclass(frozen=True, slots=True)
class LimitSettings:
    login_failures: int = 5
    auth_per_minute: int = 20
    message_rate: float = 10.0
    message_burst: int = 50
    streams_per_user: int = 100
    channels_per_hour: int = 10


def refusal(limit: Limit, message: str, retry_after: float) -> errors.ResourceExhausted:
    metrics.count_rate_limited(limit)
    return errors.ResourceExhausted(
        message,
        reason=errors.Reason.RATE_LIMITED,
        retry_after=max(retry_after, 0.001),
        quota=limit,
    )


class _Recent(Generic[K, V]):
    """A dict that forgets its least recently used keys beyond a size."""

    def __init__(self, size: int = MAX_KEYS) -> None:
        self._items: OrderedDict[K, V] = OrderedDict()
        self._size = size

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self._size:
            self._items.popitem(last=False)

    def pop(self, key: K) -> None:
        self._items.pop(key, None)


class _Bucket:
    """A token bucket: `rate` tokens a second, at most `burst` saved up."""

    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class TokenBuckets(Generic[K]):
    def __init__(self, *, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._buckets: _Recent[K, _Bucket] = _Recent()

    @property
    def off(self) -> bool:
        return self._rate <= 0 or self._burst <= 0

    def take(self, key: K) -> float:
        """Take a token: 0 if there was one, else the seconds until there will be."""
        if self.off:
            return 0.0
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self._burst, now)
            self._buckets.put(key, bucket)
        else:
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.stamp) * self._rate)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._rate


@dataclass(slots=True)
class _Failures:
    times: list[float]
    locked_until: float = 0.0


class Limits:
    def __init__(self, settings: LimitSettings, *, clock: Callable[[], float] = time.monotonic):
        self._settings = settings
        self._clock = clock
        self._auth = TokenBuckets[str](
            rate=settings.auth_per_minute / 60, burst=settings.auth_per_minute, clock=clock
        )
        self._messages = TokenBuckets[tuple[int, int]](
            rate=settings.message_rate, burst=settings.message_burst, clock=clock
        )
        self._channels = TokenBuckets[int](
            rate=settings.channels_per_hour / 3600, burst=settings.channels_per_hour, clock=clock
        )
        self._failures: _Recent[str, _Failures] = _Recent()
        self._streams: dict[int, int] = {}

    # Logins and registrations

    def check_client(self, address: str) -> None:
        """Before a login or a registration from `address` does anything."""
        wait = self._auth.take(address)
        if wait:
            raise refusal(
                Limit.AUTH_PER_ADDRESS, "Too many logins or registrations, try again later", wait
            )

    def check_login(self, name_key: str) -> None:
        """Before a login for a name (any name: existing or not, so as to reveal nothing)."""
        failures = self._failures.get(name_key)
        if failures is None:
            return
        wait = failures.locked_until - self._clock()
        if wait > 0:
            raise refusal(
                Limit.LOGIN_FAILURES, "Too many failed logins for this user, try again later", wait
            )

    def login_failed(self, name_key: str) -> None:
        """After a wrong password: past the allowed failures, each one doubles the wait."""
        allowed = self._settings.login_failures
        if allowed <= 0:
            return
        now = self._clock()
        failures = self._failures.get(name_key) or _Failures(times=[])
        failures.times = [t for t in failures.times if now - t < FAILURE_WINDOW_SECONDS]
        failures.times.append(now)
        beyond = len(failures.times) - allowed
        if beyond > 0:
            failures.locked_until = now + min(2.0 ** (beyond - 1), MAX_BACKOFF_SECONDS)
        self._failures.put(name_key, failures)

    def login_succeeded(self, name_key: str) -> None:
        self._failures.pop(name_key)

    # Messages and channels

    def check_message(self, user_id: int, channel_id: int) -> None:
        wait = self._messages.take((user_id, channel_id))
        if wait:
            raise refusal(Limit.MESSAGES, "Too many messages, slow down", wait)

    def check_channel_creation(self, user_id: int) -> None:
        wait = self._channels.take(user_id)
        if wait:
            raise refusal(Limit.CHANNELS, "Too many channels created, try again later", wait)

    # Live streams

    def open_stream(self, user_id: int) -> None:
        """Count a stream the user opens; `close_stream` must follow once it ends."""
        allowed = self._settings.streams_per_user
        count = self._streams.get(user_id, 0)
        if allowed > 0 and count >= allowed:
            raise refusal(
                Limit.STREAMS, "Too many live streams open, close one first", STREAM_RETRY_SECONDS
            )
        self._streams[user_id] = count + 1

    def close_stream(self, user_id: int) -> None:
        count = self._streams.get(user_id, 0) - 1
        if count > 0:
            self._streams[user_id] = count
        else:
            self._streams.pop(user_id, None)
