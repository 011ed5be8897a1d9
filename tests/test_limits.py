"""SPEC §10's limits: each refusal is RESOURCE_EXHAUSTED (or UNAVAILABLE for the
hash queue) with RetryInfo and QuotaFailure, decided before any hashing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from atomchat.v1 import channels_pb2, chat_pb2, users_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from prometheus_client import REGISTRY

from atomchat_server.app import App
from atomchat_server.auth.passwords import Passwords
from atomchat_server.domain import errors
from atomchat_server.limits import Limit, Limits, LimitSettings
from tests.chat_support import chat, inbox
from tests.conftest import NO_LIMITS, with_settings
from tests.support import Api, People, unique


@dataclass
class Refusal:
    code: grpc.StatusCode
    retry_after: float
    quota: str


def refusal_of(error: grpc.aio.AioRpcError) -> Refusal:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, error
    retry_after, quota = -1.0, ""
    for detail in status.details:
        retry = error_details_pb2.RetryInfo()
        failure = error_details_pb2.QuotaFailure()
        if detail.Unpack(retry):
            retry_after = retry.retry_delay.ToTimedelta().total_seconds()
        elif detail.Unpack(failure):
            quota = failure.violations[0].subject
    return Refusal(error.code(), retry_after, quota)


async def refused(call: Awaitable[Any]) -> Refusal:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return refusal_of(raised.value)


@dataclass
class Limited:
    app: App
    people: People


@pytest.fixture
async def limited(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[Limited]:
    """A server with the limits the test's `limits` marker gives (the rest off)."""
    marker = request.node.get_closest_marker("limits")
    changes = marker.kwargs if marker else {}
    overrides = {key: value for key, value in changes.items() if key in _SETTINGS_FIELDS}
    limit_changes = {k: v for k, v in changes.items() if k not in _SETTINGS_FIELDS}
    settings = with_settings(limits=_with(NO_LIMITS, **limit_changes), **overrides)
    app = App(settings, database_url)
    await app.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            yield Limited(app, People(channel, database_url))
    finally:
        await app.stop()


_SETTINGS_FIELDS = {"hash_queue", "trusted_proxies"}


def _with(limits: LimitSettings, **changes: Any) -> LimitSettings:
    values = {name: getattr(limits, name) for name in LimitSettings.__dataclass_fields__}
    values.update(changes)
    return LimitSettings(**values)


def login(api: Api, username: str, password: str, **metadata: str) -> Any:
    return api.users.Login(
        users_pb2.LoginRequest(username=username, password=password),
        metadata=tuple(metadata.items()),
    )


def count_verifications(app: App) -> Callable[[], int]:
    """Count the password verifications the app's workers are asked for."""
    calls = 0
    verify = app.passwords.verify

    async def counting(password: str, hashed: str | None) -> bool:
        nonlocal calls
        calls += 1
        return await verify(password, hashed)

    app.passwords.verify = counting  # type: ignore[method-assign]
    return lambda: calls


@pytest.mark.limits(login_failures=2)
async def test_failed_logins_for_one_name_lock_it_with_growing_waits_before_hashing(
    limited: Limited,
) -> None:
    person = await limited.people.user()
    anonymous = limited.people.anonymous
    verifications = count_verifications(limited.app)
    for _ in range(3):
        with pytest.raises(grpc.aio.AioRpcError) as wrong:
            await login(anonymous, person.username, "wrong-password")
        assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert verifications() == 3
    # The third failure went past the two allowed: the name waits, even with the
    # right password, and nothing is hashed meanwhile.
    refusal = await refused(login(anonymous, person.username, person.password))
    assert refusal.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refusal.quota == Limit.LOGIN_FAILURES
    assert 0 < refusal.retry_after <= 1.0
    assert verifications() == 3
    # The same name in another case is the same name.
    again = await refused(login(anonymous, person.username.upper(), person.password))
    assert again.quota == Limit.LOGIN_FAILURES
    # Other names are not affected.
    other = await limited.people.user()
    await login(anonymous, other.username, other.password)


@pytest.mark.limits(auth_per_minute=3)
async def test_logins_and_registrations_per_client_address(limited: Limited) -> None:
    anonymous = limited.people.anonymous
    name = unique("addr")
    await anonymous.users.Register(users_pb2.RegisterRequest(username=name, password="secret-pw"))
    await login(anonymous, name, "secret-pw")
    await login(anonymous, name, "secret-pw")
    refusal = await refused(login(anonymous, name, "secret-pw"))
    assert refusal.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refusal.quota == Limit.AUTH_PER_ADDRESS
    assert 0 < refusal.retry_after <= 20.0
    refusal = await refused(
        anonymous.users.Register(
            users_pb2.RegisterRequest(username=unique("addr"), password="secret-pw")
        )
    )
    assert refusal.quota == Limit.AUTH_PER_ADDRESS
    # Behind our own proxy (a loopback peer), the address is the one it forwarded.
    await login(anonymous, name, "secret-pw", **{"x-atomchat-client-address": "203.0.113.7"})


@pytest.mark.limits(auth_per_minute=1, trusted_proxies=())
async def test_a_client_address_header_from_an_untrusted_peer_is_ignored(limited: Limited) -> None:
    person = await limited.people.login("user_program", "1234")  # this uses up the minute
    anonymous = limited.people.anonymous
    refusal = await refused(
        login(anonymous, person.username, "1234", **{"x-atomchat-client-address": "198.51.100.1"})
    )
    assert refusal.quota == Limit.AUTH_PER_ADDRESS


@pytest.mark.limits(message_rate=1.0, message_burst=3)
async def test_messages_per_user_per_channel(limited: Limited) -> None:
    owner = await limited.people.user()
    channel = await limited.people.channel(owner)
    other = await limited.people.channel(owner)
    for n in range(3):
        await owner.api.chat.SendMessage(
            chat_pb2.SendMessageRequest(channel_id=channel.id, content=f"burst {n}")
        )
    refusal = await refused(
        owner.api.chat.SendMessage(
            chat_pb2.SendMessageRequest(channel_id=channel.id, content="one too many")
        )
    )
    assert (refusal.code, refusal.quota) == (grpc.StatusCode.RESOURCE_EXHAUSTED, Limit.MESSAGES)
    assert 0 < refusal.retry_after <= 1.0
    # Another channel has its own bucket.
    await owner.api.chat.SendMessage(
        chat_pb2.SendMessageRequest(channel_id=other.id, content="elsewhere")
    )
    # On a stream the refusal is an error frame with the same details; the stream stays.
    async with chat(owner, channel.id, history_limit=0) as stream:
        await stream.send("still too many", "k")
        error = await stream.error("k")
        assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        kinds = {detail.TypeName() for detail in error.details}
        assert {"google.rpc.RetryInfo", "google.rpc.QuotaFailure"} <= kinds
        assert not stream.feed.finished


@pytest.mark.limits(streams_per_user=2)
async def test_live_streams_per_user(limited: Limited) -> None:
    owner = await limited.people.user()
    channel = await limited.people.channel(owner)
    async with chat(owner, channel.id), chat(owner, channel.id):
        async with chat(owner, channel.id, wait_joined=False) as third:
            ended = await third.feed.until_ended()
        refusal = refusal_of(ended)
        assert (refusal.code, refusal.quota) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            Limit.STREAMS,
        )
        assert refusal.retry_after > 0
    # Closed streams no longer count; inbox streams count too.
    async with chat(owner, channel.id), inbox(owner) as first:
        async with inbox(owner, wait_open=False) as third_inbox:
            ended = await third_inbox.until_ended()
        assert refusal_of(ended).quota == Limit.STREAMS
        assert not first.finished


@pytest.mark.limits(channels_per_hour=2)
async def test_channels_created_per_user(limited: Limited) -> None:
    owner = await limited.people.user()
    await limited.people.channel(owner)
    await limited.people.channel(owner)
    refusal = await refused(
        owner.api.channels.CreateChannel(channels_pb2.CreateChannelRequest(name=unique("Ch")))
    )
    assert (refusal.code, refusal.quota) == (grpc.StatusCode.RESOURCE_EXHAUSTED, Limit.CHANNELS)
    assert refusal.retry_after > 60
    someone_else = await limited.people.user()
    await limited.people.channel(someone_else)


def refusals(limit: Limit) -> float:
    """atomchat_rate_limited_total{limit} as the metrics endpoint shows it."""
    value = REGISTRY.get_sample_value("atomchat_rate_limited_total", {"limit": limit})
    return value or 0.0


async def test_a_full_hash_queue_refuses_at_once_without_hashing() -> None:
    passwords = Passwords(workers=1, max_queue=2)
    await passwords.start()
    try:
        running = [asyncio.ensure_future(passwords.hash("one")) for _ in range(2)]
        await asyncio.sleep(0)  # both are queued now, and cannot have finished
        refusals_before = refusals(Limit.HASH_QUEUE)
        with pytest.raises(errors.Unavailable) as raised:
            await passwords.hash("three")
        assert refusals(Limit.HASH_QUEUE) == refusals_before + 1
        assert raised.value.reason == errors.Reason.PASSWORD_QUEUE_FULL
        assert raised.value.quota == Limit.HASH_QUEUE
        assert raised.value.retry_after
        await asyncio.gather(*running)
        assert await passwords.verify("one", await passwords.hash("one"))
    finally:
        await passwords.close()


# The counting itself, on a clock the tests move.


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_message_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    clock = Clock()
    limits = Limits(LimitSettings(message_rate=2.0, message_burst=3), clock=clock)
    for _ in range(3):
        limits.check_message(1, 1)
    with pytest.raises(errors.ResourceExhausted) as raised:
        limits.check_message(1, 1)
    assert raised.value.retry_after == pytest.approx(0.5)
    clock.now += 0.5
    limits.check_message(1, 1)
    clock.now += 100
    for _ in range(3):
        limits.check_message(1, 1)
    with pytest.raises(errors.ResourceExhausted):
        limits.check_message(1, 1)


def test_login_failures_double_the_wait_and_a_success_forgets_them() -> None:
    clock = Clock()
    limits = Limits(LimitSettings(login_failures=2), clock=clock)
    limits.login_failed("name")
    limits.login_failed("name")
    limits.check_login("name")  # two failures are allowed
    for wait in (1.0, 2.0, 4.0):
        limits.login_failed("name")
        with pytest.raises(errors.ResourceExhausted) as refused:
            limits.check_login("name")
        assert refused.value.retry_after == wait
        clock.now += wait
        limits.check_login("name")
    limits.login_succeeded("name")
    limits.login_failed("name")
    limits.check_login("name")


def test_failures_older_than_the_window_are_forgotten() -> None:
    clock = Clock()
    limits = Limits(LimitSettings(login_failures=2), clock=clock)
    limits.login_failed("name")
    limits.login_failed("name")
    clock.now += 15 * 60
    limits.login_failed("name")
    limits.check_login("name")


def test_zero_turns_every_limit_off() -> None:
    limits = Limits(NO_LIMITS, clock=Clock())
    for _ in range(1000):
        limits.check_client("1.2.3.4")
        limits.check_message(1, 1)
        limits.check_channel_creation(1)
        limits.open_stream(1)
        limits.login_failed("name")
        limits.check_login("name")


def test_streams_are_counted_per_user_and_released() -> None:
    limits = Limits(LimitSettings(streams_per_user=1), clock=Clock())
    limits.open_stream(1)
    limits.open_stream(2)
    with pytest.raises(errors.ResourceExhausted):
        limits.open_stream(1)
    limits.close_stream(1)
    limits.open_stream(1)


def test_the_limits_remember_a_bounded_number_of_keys() -> None:
    clock = Clock()
    limits = Limits(LimitSettings(auth_per_minute=1), clock=clock)
    for number in range(200_000):
        limits.check_client(f"10.0.{number // 256}.{number % 256}")
    assert len(limits._auth._buckets._items) <= 100_000
