"""The web client in headless Chromium, served by Envoy (grpc-web) in front of
the session's server: logging in, a channel's history, sending, another
client's message arriving live, and a dropped stream resumed after the last
seq seen."""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from atomchat.v1 import chat_pb2, resources_pb2
from playwright.async_api import Browser, Page, Request, Route, expect

from tests.support import People, Person, unique

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "test-artifacts" / "browser-chat.png"
TIMEOUT_MS = 15_000
SUBSCRIBE = "**/atomchat.v1.ChatService/Subscribe"
SEEDED_HISTORY = [
    ("programmer_creator", "Привет всем, я создал этот канал!"),
    ("programmer_creator", "Каковы ваши ожидания от этого канала?"),
    ("user_program", "Спасибо за возможность присоединиться к каналу!"),
    ("user_program", "Я уверен, что мы тут найдем много интересного!"),
]

pytestmark = pytest.mark.browser


@pytest.fixture
async def page(browser: Browser, envoy_url: str) -> AsyncIterator[Page]:
    """A fresh browser tab (own session storage) on Envoy's origin; fails on script errors."""
    context = await browser.new_context(base_url=envoy_url)
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    await context.close()
    assert errors == [], f"script errors on the page: {errors}"


async def log_in(page: Page, username: str, password: str) -> None:
    await page.goto("/")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()


async def open_channel(page: Page, name: str) -> None:
    await page.get_by_role("navigation").get_by_role("link", name=name).click()
    await expect(page.locator("#room-title")).to_have_text(name)
    await expect(page.locator("#room-status")).to_have_text("Live")


async def shown(page: Page) -> list[tuple[int, str, str]]:
    """The messages on the page, top to bottom: (seq, sender, content)."""
    rows = await page.locator("#messages .message").evaluate_all(
        """items => items.map(item => [
            Number(item.dataset.seq),
            item.querySelector(".sender").textContent,
            item.querySelector(".content").textContent,
        ])"""
    )
    return [(int(seq), str(sender), str(content)) for seq, sender, content in rows]


async def post(person: Person, channel_id: int, content: str) -> resources_pb2.Message:
    """A message sent straight to the gRPC server, not through the browser."""
    message: resources_pb2.Message = await person.api.chat.SendMessage(
        chat_pb2.SendMessageRequest(
            channel_id=channel_id, content=content, client_message_id=str(uuid.uuid4())
        )
    )
    return message


def grpc_web_body(*events: chat_pb2.ChatEvent, status: int, message: str) -> bytes:
    """A grpc-web response body: a frame per event, then the trailers frame."""
    trailers = f"grpc-status:{status}\r\ngrpc-message:{message}\r\n".encode()
    frames = [_frame(0, event.SerializeToString()) for event in events]
    return b"".join([*frames, _frame(0x80, trailers)])


def _frame(flag: int, payload: bytes) -> bytes:
    return struct.pack(">BI", flag, len(payload)) + payload


def subscribe_request(request: Request) -> chat_pb2.SubscribeRequest:
    body = request.post_data_buffer
    assert body is not None
    return chat_pb2.SubscribeRequest.FromString(body[5:])


async def test_a_wrong_password_shows_the_servers_message(page: Page) -> None:
    await log_in(page, "user_program", "not-the-password")

    await expect(page.locator("#login-error")).to_have_text("Invalid authentication credentials")
    await expect(page.get_by_role("button", name="Log out")).to_be_hidden()


async def test_history_then_own_and_others_messages_appear_live(page: Page, people: People) -> None:
    await log_in(page, "user_program", "1234")
    await expect(page.locator("#me")).to_have_text("user_program")
    await open_channel(page, "Программисты")

    messages = page.locator("#messages .message")
    for sender, content in SEEDED_HISTORY:
        seeded = messages.filter(has_text=content)
        await expect(seeded).to_have_count(1)
        await expect(seeded.locator(".sender")).to_have_text(sender)

    mine = unique("Привет из браузера")
    await page.get_by_label("New message").fill(mine)
    await page.get_by_role("button", name="Send").click()
    sent = messages.filter(has_text=mine)
    await expect(sent).to_have_count(1)
    await expect(sent.locator(".sender")).to_have_text("user_program")
    await expect(page.get_by_label("New message")).to_have_value("")
    sent_at = datetime.fromisoformat(await sent.locator("time").get_attribute("datetime") or "")
    assert abs(datetime.now(UTC) - sent_at) < timedelta(minutes=1)

    creator = await people.login("programmer_creator", "1234")
    theirs = unique("Ответ через gRPC")
    await post(creator, 1, theirs)
    received = messages.filter(has_text=theirs)
    await expect(received).to_have_count(1)
    await expect(received.locator(".sender")).to_have_text("programmer_creator")

    rows = await shown(page)
    seqs = [seq for seq, _, _ in rows]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "in seq order, no gap or duplicate"
    assert [(sender, content) for _, sender, content in rows[-2:]] == [
        ("user_program", mine),
        ("programmer_creator", theirs),
    ]
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOT)


async def test_a_dropped_stream_resumes_after_the_last_seq_seen(page: Page, people: People) -> None:
    owner = await people.user("web")
    channel = await people.channel(owner)
    history = [await post(owner, channel.id, f"Сообщение {n}") for n in (1, 2, 3)]

    # The first stream delivers two messages and then fails; the reconnection
    # is held until a message has been sent in between.
    requests: list[chat_pb2.SubscribeRequest] = []
    reconnecting = asyncio.Event()
    sent_meanwhile = asyncio.Event()

    async def drop_the_first_stream(route: Route, request: Request) -> None:
        requests.append(subscribe_request(request))
        if len(requests) == 1:
            body = grpc_web_body(
                chat_pb2.ChatEvent(joined=chat_pb2.ChatJoined(channel=channel)),
                *(chat_pb2.ChatEvent(message=message) for message in history[:2]),
                status=14,
                message="connection lost",
            )
            await route.fulfill(
                status=200, headers={"content-type": "application/grpc-web+proto"}, body=body
            )
            return
        reconnecting.set()
        await sent_meanwhile.wait()
        await route.continue_()

    await page.route(SUBSCRIBE, drop_the_first_stream)
    await log_in(page, owner.username, owner.password)
    await page.get_by_role("navigation").get_by_role("link", name=channel.name).click()
    async with asyncio.timeout(TIMEOUT_MS / 1000):
        await reconnecting.wait()
    await expect(page.locator("#room-status")).to_have_text("Reconnecting…")
    meanwhile = await post(owner, channel.id, "Пока связи не было")
    sent_meanwhile.set()
    await expect(page.locator("#room-status")).to_have_text("Live")
    after = await post(owner, channel.id, "Снова на связи")
    await expect(page.locator("#messages .message").filter(has_text=after.content)).to_have_count(1)

    assert not requests[0].HasField("after_seq")
    assert requests[1].after_seq == history[1].seq
    expected = [*history, meanwhile, after]
    assert await shown(page) == [(m.seq, owner.username, m.content) for m in expected]
