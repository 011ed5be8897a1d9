"""What a person notices: keyboard-only use, the browser's language, narrow
screens, a reload that keeps the channel and the scroll position, a long
channel kept to a window of messages, accessibility (axe-core), and a
screenshot of every main screen at 1280 and 390 pixels (test-artifacts/)."""

from __future__ import annotations

import asyncio

import pytest
from atomchat.v1 import chat_pb2, join_requests_pb2
from playwright.async_api import Page, ViewportSize, expect

from tests.edge.web.conftest import (
    NARROW,
    WIDE,
    OpenPage,
    axe_violations,
    channel_link,
    log_in,
    message,
    open_channel,
    post,
    screenshot,
)
from tests.support import People, Person, unique

pytestmark = pytest.mark.browser
MAX_RENDERED = 240


async def fill_channel(person: Person, channel_id: int, count: int) -> None:
    """`count` messages ("Сообщение 1" …), sent 100 at a time."""
    for start in range(1, count + 1, 100):
        await asyncio.gather(
            *(
                person.api.chat.SendMessage(
                    chat_pb2.SendMessageRequest(channel_id=channel_id, content=f"Сообщение {n}")
                )
                for n in range(start, min(count, start + 99) + 1)
            )
        )


async def rendered(page: Page) -> int:
    return await page.locator("#messages .message").count()


async def test_keyboard_only_log_in_open_a_channel_and_send(
    open_page: OpenPage, people: People
) -> None:
    person = await people.user("keys")
    channel = await people.channel(person)
    page = await open_page()
    await page.goto("/")
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Username")).to_be_focused()
    await page.keyboard.type(person.username)
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Password")).to_be_focused()
    await page.keyboard.type(person.password)
    await page.keyboard.press("Enter")
    await expect(page.locator("#me")).to_have_text(person.username)

    link = channel_link(page, channel.name)
    for _ in range(20):
        await page.keyboard.press("Tab")
        if await link.evaluate("element => element === document.activeElement"):
            break
    await expect(link).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#room-status")).to_have_text("Live")
    composer = page.get_by_label("New message")
    await composer.focus()
    text = unique("С клавиатуры")
    await page.keyboard.type(text)
    await page.keyboard.press("Enter")
    await expect(message(page, text)).to_have_count(1)
    await expect(composer).to_be_focused()

    # Reply, then Escape in the composer cancels the reply.
    await message(page, text).get_by_role("button", name="Reply").press("Enter")
    await expect(page.get_by_text(f"Replying to {person.username}")).to_be_visible()
    await expect(composer).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(page.get_by_text(f"Replying to {person.username}")).to_be_hidden()


async def test_the_interface_follows_the_browsers_language(
    open_page: OpenPage, people: People
) -> None:
    person = await people.user("ru")
    channel = await people.channel(person)
    page = await open_page(locale="ru-RU")
    await page.goto("/")
    assert await page.evaluate("document.documentElement.lang") == "ru"
    await page.get_by_label("Имя пользователя").fill(person.username)
    await page.get_by_label("Пароль").fill(person.password)
    await page.get_by_role("button", name="Войти").click()
    await expect(page.get_by_role("heading", name="Мои каналы")).to_be_visible()
    await open_channel_ru(page, channel.id, channel.name)
    await expect(page.get_by_role("button", name="Отправить")).to_be_visible()

    english = await open_page(locale="en-GB")
    await english.goto("/")
    await expect(english.get_by_role("button", name="Log in")).to_be_visible()


async def open_channel_ru(page: Page, channel_id: int, name: str) -> None:
    await page.goto(f"/#/c/{channel_id}")
    await expect(page.locator("#room-title")).to_have_text(name)
    await expect(page.locator("#room-status")).to_have_text("На связи")


@pytest.mark.parametrize("width", [360, 390])
async def test_narrow_screens_fit_without_sideways_scrolling(
    open_page: OpenPage, people: People, width: int
) -> None:
    person = await people.user("narrow")
    channel = await people.channel(person, description="Длинное описание " * 8)
    await post(person, channel.id, "Оченьдлинноесловобезпробелов" * 6)
    page = await open_page(viewport={"width": width, "height": 740})
    await log_in(page, person)
    await expect(channel_link(page, channel.name)).to_be_visible()
    for screen in (None, f"/#/c/{channel.id}", "/#/browse", "/#/inbox"):
        if screen:
            await page.goto(screen)
        await page.wait_for_load_state()
        overflow = await page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= width, f"{screen or 'home'} is {overflow} px wide"
    await expect(page.locator("#room-status")).to_have_count(0)
    await page.goto(f"/#/c/{channel.id}")
    for button in ("Send", "Log out", "Members"):
        box = await page.get_by_role("button", name=button, exact=True).bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= width, f"{button} is cut off"


async def test_a_reload_keeps_the_channel_and_the_scroll_position(
    open_page: OpenPage, people: People
) -> None:
    person = await people.user("reload")
    channel = await people.channel(person)
    await fill_channel(person, channel.id, 150)
    page = await open_page()
    await log_in(page, person)
    await open_channel(page, channel.id, channel.name)
    await expect(message(page, "Сообщение 150")).to_be_visible()

    # Scroll up until message 60 is at the top of the list.
    target = message(page, "Сообщение 60")
    for _ in range(30):
        if await target.count():
            break
        await page.locator("#messages").evaluate("list => { list.scrollTop = 0; }")
        await page.wait_for_timeout(100)
    await target.evaluate(
        "item => { const list = item.parentElement; list.scrollTop = item.offsetTop - 5; }"
    )
    await page.wait_for_timeout(200)
    before = await target.evaluate("item => item.offsetTop - item.parentElement.scrollTop")

    await page.reload()
    await expect(page.locator("#room-title")).to_have_text(channel.name)
    await expect(page.locator("#room-status")).to_have_text("Live")
    await expect(target).to_be_in_viewport()
    after = await target.evaluate("item => item.offsetTop - item.parentElement.scrollTop")
    assert abs(after - before) <= 2


async def test_ten_thousand_messages_keep_a_window_in_the_page(
    open_page: OpenPage, people: People
) -> None:
    person = await people.user("long")
    channel = await people.channel(person)
    await fill_channel(person, channel.id, 10_000)
    page = await open_page()
    await log_in(page, person)
    await open_channel(page, channel.id, channel.name)
    await expect(message(page, "Сообщение 10000")).to_be_visible()

    # Scroll back through about a thousand messages: older pages come in,
    # the page never holds more than its window, and no task blocks for long.
    await page.evaluate(
        """() => {
            window.longTasks = [];
            new PerformanceObserver(list => {
                for (const entry of list.getEntries()) window.longTasks.push(entry.duration);
            }).observe({entryTypes: ["longtask"]});
        }"""
    )
    target = message(page, "Сообщение 9000")
    for _ in range(200):
        if await target.count():
            break
        await page.mouse.move(600, 400)
        await page.mouse.wheel(0, -3000)
        await page.wait_for_timeout(60)
        assert await rendered(page) <= MAX_RENDERED
    await expect(target).to_have_count(1)
    long_tasks: list[float] = await page.evaluate("window.longTasks")
    assert max(long_tasks, default=0) < 500, long_tasks

    await page.get_by_role("button", name="Jump to latest").click()
    await expect(message(page, "Сообщение 10000")).to_be_in_viewport()
    assert await rendered(page) <= MAX_RENDERED


@pytest.mark.parametrize("viewport", [WIDE, NARROW], ids=["1280", "390"])
async def test_main_screens_have_no_serious_accessibility_violations(
    open_page: OpenPage, people: People, viewport: ViewportSize
) -> None:
    """axe-core on every main screen; each one's screenshot is kept in test-artifacts/."""
    moderator, member = await people.moderator(), await people.user("member")
    channel = await people.channel(moderator, members=(member,), description="Общий канал")
    asker = await people.user("asker")
    await asker.api.join_requests.CreateJoinRequest(
        join_requests_pb2.CreateJoinRequestRequest(channel_id=channel.id)
    )
    sent = await post(member, channel.id, f"@{moderator.username} привет 👋")
    await moderator.api.chat.AddReaction(
        chat_pb2.AddReactionRequest(channel_id=channel.id, message_id=sent.id, emoji="👍")
    )
    await post(moderator, channel.id, "Ответ", reply_to_id=sent.id)

    page = await open_page(viewport=viewport)
    await page.goto("/")
    await expect(page.get_by_role("button", name="Log in")).to_be_visible()
    found: dict[str, list[str]] = {}

    async def check(name: str) -> None:
        await screenshot(page, name)
        violations = await axe_violations(page)
        if violations:
            found[name] = [f"{v['id']}: {v['help']}" for v in violations]

    await check("login")
    await log_in(page, moderator)
    await check("home")
    await open_channel(page, channel.id, channel.name)
    await expect(message(page, "Ответ")).to_be_visible()
    await check("channel")
    await page.get_by_role("button", name="Members").click()
    await expect(page.get_by_role("list", name="Members").get_by_role("listitem")).to_have_count(2)
    await check("members")
    await page.get_by_role("button", name="Settings").click()
    await check("settings")
    await page.goto("/#/browse")
    await expect(page.get_by_role("list", name="All channels")).to_contain_text(channel.name)
    await check("browse")
    await page.goto("/#/new")
    await check("new-channel")
    await page.goto("/#/inbox")
    await expect(page.get_by_role("list", name="Join requests")).to_contain_text(
        f"{asker.username} asks to join {channel.name}"
    )
    await check("inbox")
    await page.goto("/#/moderation")
    await expect(page.get_by_role("row").filter(has_text=member.username)).to_be_visible()
    await page.get_by_role("form", name="Find a user").get_by_label("Username").fill(asker.username)
    await page.get_by_role("button", name="Find", exact=True).click()
    await expect(page.get_by_role("region", name="Found user")).to_contain_text(asker.username)
    await check("moderation")
    await page.goto("/#/search?q=" + "привет")
    await expect(page.get_by_role("list", name="Results").locator("mark").first).to_be_visible()
    await check("search")
    assert found == {}
