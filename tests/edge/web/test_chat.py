"""Two chatters in two browsers: messages, edits, deletions, reactions,
replies and mentions, typing and presence, unread and mention counts, search,
and the streams resumed after a dropped connection."""

from __future__ import annotations

import asyncio
import struct

import pytest
from atomchat.v1 import channels_pb2, chat_pb2, inbox_pb2, join_requests_pb2, resources_pb2
from playwright.async_api import Page, Request, Route, expect

from tests.edge.web.conftest import (
    TIMEOUT_MS,
    OpenPage,
    channel_link,
    log_in,
    message,
    open_channel,
    post,
)
from tests.support import People, unique

pytestmark = pytest.mark.browser


async def send(page: Page, text: str) -> None:
    """Types a message and sends it with Enter."""
    composer = page.get_by_label("New message")
    await composer.fill(text)
    await composer.press("Enter")
    await expect(composer).to_have_value("")


async def test_two_chatters_edit_delete_react_and_reply(
    open_page: OpenPage, people: People
) -> None:
    alice, bob = await people.user("alice"), await people.user("bob")
    channel = await people.channel(alice, members=(bob,))
    page_a, page_b = await open_page(), await open_page()
    for page, person in ((page_a, alice), (page_b, bob)):
        await log_in(page, person)
        await open_channel(page, channel.id, channel.name)

    first = unique("Первое")
    await send(page_a, first)
    await expect(message(page_b, first).locator(".sender")).to_have_text(alice.username)

    # An edit: Escape leaves it, Enter saves it; both browsers show the new text.
    edited = unique("Исправлено")
    await message(page_a, first).get_by_role("button", name="Edit").click()
    editor = page_a.get_by_label("Edit message")
    await editor.fill("never saved")
    await editor.press("Escape")
    await expect(editor).to_be_hidden()
    await expect(message(page_a, first)).to_be_visible()
    await message(page_a, first).get_by_role("button", name="Edit").click()
    await editor.fill(edited)
    await editor.press("Enter")
    for page in (page_a, page_b):
        await expect(message(page, edited).locator(".edited")).to_have_text("(edited)")
        await expect(message(page, first)).to_have_count(0)

    # Bob reacts; Alice sees the count and adds hers, Bob sees 2.
    await message(page_b, edited).get_by_role("button", name="React").click()
    await message(page_b, edited).get_by_role("button", name="React with 🎉").click()
    chip_a = message(page_a, edited).get_by_role("button", name="🎉: 1")
    await expect(chip_a).to_have_attribute("aria-pressed", "false")
    await chip_a.click()
    await expect(
        message(page_b, edited).get_by_role("button", name="🎉: 2, including you")
    ).to_be_visible()
    await expect(
        message(page_a, edited).get_by_role("button", name="🎉: 2, including you")
    ).to_have_attribute("aria-pressed", "true")

    # Bob replies mentioning Alice: a quote of the message, the mention highlighted.
    await message(page_b, edited).get_by_role("button", name="Reply").click()
    await expect(page_b.get_by_text(f"Replying to {alice.username}")).to_be_visible()
    answer = unique("Ответ")
    await send(page_b, f"@{alice.username} {answer}")
    reply = message(page_a, answer)
    await expect(reply.locator(".reply-quote")).to_have_text(
        f"In reply to {alice.username}: {edited}"
    )
    await expect(reply.locator(".mention")).to_have_text(f"@{alice.username}")
    await expect(reply).to_have_class("message mentions-me")

    # Alice deletes her message: a tombstone for both.
    page_a.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await message(page_a, edited).get_by_role("button", name="Delete").click()
    for page in (page_a, page_b):
        tombstone = page.locator("#messages .message.deleted")
        await expect(tombstone).to_have_count(1)
        await expect(tombstone.locator(".content")).to_have_text("Message deleted")
    stored = await alice.api.chat.ListMessages(chat_pb2.ListMessagesRequest(channel_id=channel.id))
    assert [m.deleted for m in stored.messages] == [False, True]
    assert stored.messages[0].reply_to_id == stored.messages[1].id
    assert list(stored.messages[0].mention_user_ids) == [alice.id]


async def test_typing_and_presence_reach_the_other_chatter(
    open_page: OpenPage, people: People
) -> None:
    alice, bob = await people.user("alice"), await people.user("bob")
    channel = await people.channel(alice, members=(bob,))
    page_a, page_b = await open_page(), await open_page()
    await log_in(page_a, alice)
    await open_channel(page_a, channel.id, channel.name)
    await expect(page_a.get_by_text("1 online")).to_be_visible()

    await log_in(page_b, bob)
    await open_channel(page_b, channel.id, channel.name)
    await expect(page_a.get_by_text("2 online")).to_be_visible()
    await page_a.get_by_role("button", name="Members").click()
    members = page_a.get_by_role("list", name="Members")
    await expect(members.get_by_role("listitem").filter(has_text=bob.username)).to_contain_text(
        "online"
    )

    await page_b.get_by_label("New message").press_sequentially("пиш")
    await expect(page_a.locator(".typing")).to_have_text(f"{bob.username} is typing…")
    await page_b.get_by_label("New message").press("Enter")
    await expect(page_a.locator(".typing")).to_have_text("")

    await page_b.goto("/#/browse")
    await expect(page_a.get_by_text("1 online")).to_be_visible()


async def test_unread_and_mention_badges_follow_the_inbox_and_clear_on_reading(
    open_page: OpenPage, people: People
) -> None:
    alice, bob = await people.user("alice"), await people.user("bob")
    channel = await people.channel(alice, members=(bob,))
    page = await open_page()
    await log_in(page, alice)
    link = channel_link(page, channel.name)
    await expect(link).to_be_visible()

    await post(bob, channel.id, "без упоминания")
    await post(bob, channel.id, f"@{alice.username} посмотри")
    await expect(link).to_contain_text("2 unread")
    await expect(link).to_contain_text("1 mentions")
    assert await link.get_attribute("href") == f"#/c/{channel.id}"

    await link.click()
    await expect(message(page, "посмотри")).to_be_visible()
    await expect(link).not_to_contain_text("unread")

    async def read_state() -> resources_pb2.ReadState:
        mine = await alice.api.channels.ListMyChannels(channels_pb2.ListMyChannelsRequest())
        (listed,) = [c for c in mine.channels if c.id == channel.id]
        state: resources_pb2.ReadState = listed.read_state
        return state

    state = await read_state()
    assert (state.unread_count, state.mention_count) == (0, 0)


async def test_message_search_finds_and_opens_the_channel(
    open_page: OpenPage, people: People
) -> None:
    alice = await people.user("alice")
    channel = await people.channel(alice)
    word = unique("word").replace("_", "")
    await post(alice, channel.id, f"Здесь спрятано {word} в тексте")
    page = await open_page()
    await log_in(page, alice)

    search = page.get_by_role("search").get_by_label("Search messages")
    await search.fill(word)
    await search.press("Enter")
    results = page.get_by_role("list", name="Results")
    await expect(results.locator("mark")).to_have_text(word)
    await results.get_by_role("link", name=f"in {channel.name}").click()
    await expect(page.locator("#room-title")).to_have_text(channel.name)


def _frame(flag: int, payload: bytes) -> bytes:
    return struct.pack(">BI", flag, len(payload)) + payload


def _grpc_web(*messages: bytes, status: int, text: str) -> bytes:
    trailers = f"grpc-status:{status}\r\ngrpc-message:{text}\r\n".encode()
    return b"".join([*(_frame(0, m) for m in messages), _frame(0x80, trailers)])


async def test_a_dropped_inbox_shows_reconnecting_and_resumes_after_its_last_id(
    open_page: OpenPage, people: People
) -> None:
    owner, requester = await people.user("owner"), await people.user("asker")
    channel = await people.channel(owner)
    requests: list[inbox_pb2.StreamInboxRequest] = []
    held = asyncio.Event()
    release = asyncio.Event()

    async def drop_the_first(route: Route, request: Request) -> None:
        body = request.post_data_buffer or b""
        requests.append(inbox_pb2.StreamInboxRequest.FromString(body[5:]))
        if len(requests) == 1:
            stored = inbox_pb2.InboxEvent(
                id=41,
                membership=inbox_pb2.MembershipNotice(
                    channel=channel, change=inbox_pb2.MEMBERSHIP_CHANGE_ADDED
                ),
            )
            await route.fulfill(
                status=200,
                headers={"content-type": "application/grpc-web+proto"},
                body=_grpc_web(stored.SerializeToString(), status=14, text="connection lost"),
            )
            return
        held.set()
        await release.wait()
        await route.continue_()

    page = await open_page()
    await page.route("**/atomchat.v1.InboxService/StreamInbox", drop_the_first)
    await log_in(page, owner)
    async with asyncio.timeout(TIMEOUT_MS / 1000):
        await held.wait()
    await expect(page.locator("#inbox-status")).to_have_text("Reconnecting…")
    release.set()
    await expect(page.locator("#inbox-status")).to_have_text("")
    assert not requests[0].HasField("after_id")
    assert requests[1].after_id == 41

    # The resumed stream is the real one: a join request arrives live.
    await requester.api.join_requests.CreateJoinRequest(
        join_requests_pb2.CreateJoinRequestRequest(channel_id=channel.id)
    )
    await expect(page.get_by_role("link", name="Inbox")).to_contain_text("1")
