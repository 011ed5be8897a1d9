"""Accounts, channels and people in the browser: registering and logging in,
browsing and asking to join (the owner accepts or declines live in their
inbox), creating a channel, the members panel, channel settings and the
moderator's console."""

from __future__ import annotations

import asyncio

import pytest
from atomchat.v1 import channels_pb2, members_pb2, users_pb2
from playwright.async_api import Page, expect

from tests.edge.web.conftest import OpenPage, channel_link, log_in, message, open_channel, post
from tests.support import People, unique

pytestmark = pytest.mark.browser


def accept_dialogs(page: Page) -> None:
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))


async def test_register_then_log_out_and_in_again(open_page: OpenPage, people: People) -> None:
    page = await open_page()
    username = unique("newcomer")
    await page.goto("/")
    await page.get_by_role("button", name="New here? Create an account").click()
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill("pass-1234")
    await page.get_by_role("button", name="Create account").click()
    await expect(page.locator("#me")).to_have_text(username)
    await expect(page.get_by_text("You are not a member of any channel yet.")).to_be_visible()

    await page.get_by_role("button", name="Log out").click()
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill("wrong-password")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#login-error")).to_have_text("Invalid authentication credentials")
    await page.get_by_label("Password").fill("pass-1234")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#me")).to_have_text(username)
    person = await people.login(username, "pass-1234")
    assert person.username == username


async def test_ask_to_join_and_the_owner_accepts_live(open_page: OpenPage, people: People) -> None:
    owner, requester = await people.user("owner"), await people.user("asker")
    channel = await people.channel(owner, description=unique("Описание"))
    owner_page, requester_page = await open_page(), await open_page()
    await log_in(owner_page, owner)
    await owner_page.get_by_role("link", name="Inbox").click()
    await expect(owner_page.get_by_text("No join requests waiting.")).to_be_visible()

    await log_in(requester_page, requester)
    await requester_page.get_by_role("link", name="Browse channels").click()
    await requester_page.get_by_label("Search channels").fill(channel.description)
    cards = requester_page.get_by_role("list", name="All channels").get_by_role("listitem")
    await expect(cards).to_have_count(1)
    await cards.get_by_role("button", name=f"Ask to join: {channel.name}").click()
    await expect(cards.get_by_role("status")).to_have_text("Request pending")
    # The request is the server's, not the page's: it is still pending after a reload.
    await requester_page.reload()
    await requester_page.get_by_label("Search channels").fill(channel.description)
    await expect(cards).to_have_count(1)
    await expect(cards.get_by_role("status")).to_have_text("Request pending")
    await expect(cards.get_by_role("button", name=f"Ask to join: {channel.name}")).to_have_count(0)

    requests = owner_page.get_by_role("list", name="Join requests")
    await expect(requests.get_by_role("listitem")).to_have_count(1)
    await expect(requests.get_by_role("listitem")).to_contain_text(
        f"{requester.username} asks to join {channel.name}"
    )
    await expect(owner_page.get_by_role("link", name="Inbox")).to_contain_text("1")
    notices = owner_page.get_by_role("list", name="Notifications")
    await expect(notices).to_contain_text(f"{requester.username} asks to join {channel.name}")
    await requests.get_by_role("button", name="Accept").click()
    await expect(owner_page.get_by_text("No join requests waiting.")).to_be_visible()

    # The requester's channel list follows the inbox: the channel appears, and opens.
    await channel_link(requester_page, channel.name).click()
    await expect(requester_page.locator("#room-status")).to_have_text("Live")
    await requester_page.get_by_role("link", name="Inbox").click()
    notices = requester_page.get_by_role("list", name="Notifications")
    await expect(notices).to_contain_text(f"Your request to join {channel.name} was accepted")


async def test_the_owner_declines_a_request(open_page: OpenPage, people: People) -> None:
    owner, requester = await people.user("owner"), await people.user("asker")
    channel = await people.channel(owner)
    owner_page, requester_page = await open_page(), await open_page()
    await log_in(owner_page, owner)
    await log_in(requester_page, requester)
    await requester_page.goto("/#/browse")
    await requester_page.get_by_role("button", name=f"Ask to join: {channel.name}").click()

    await owner_page.goto("/#/inbox")
    await (
        owner_page.get_by_role("list", name="Join requests")
        .get_by_role("button", name=f"Decline: {requester.username} asks to join {channel.name}")
        .click()
    )
    await expect(owner_page.get_by_text("No join requests waiting.")).to_be_visible()
    await requester_page.goto("/#/inbox")
    notices = requester_page.get_by_role("list", name="Notifications")
    await expect(notices).to_contain_text(f"Your request to join {channel.name} was declined")
    # Declined: the channel can be asked for again.
    await requester_page.goto("/#/browse")
    await expect(
        requester_page.get_by_role("button", name=f"Ask to join: {channel.name}")
    ).to_be_visible()


async def test_create_a_channel(open_page: OpenPage, people: People) -> None:
    creator = await people.user("creator")
    page = await open_page()
    await log_in(page, creator)
    await page.get_by_role("link", name="New channel").click()
    name = unique("Новый канал")
    await page.get_by_label("Name").fill(name)
    await page.get_by_label("Description").fill("Про всё")
    await page.get_by_role("button", name="Create").click()
    await expect(page.locator("#room-title")).to_have_text(name)
    await expect(page.locator("#room-status")).to_have_text("Live")
    await expect(channel_link(page, name)).to_have_attribute("aria-current", "page")
    await expect(page.get_by_role("button", name="Settings")).to_be_visible()

    mine = await creator.api.channels.ListMyChannels(channels_pb2.ListMyChannelsRequest())
    assert [(c.name, c.description, c.owner_id) for c in mine.channels] == [
        (name, "Про всё", creator.id)
    ]


async def test_members_panel_adds_removes_and_a_member_leaves(
    open_page: OpenPage, people: People
) -> None:
    owner, guest, leaver = (
        await people.user("owner"),
        await people.user("guest"),
        await people.user("leaver"),
    )
    channel = await people.channel(owner, members=(leaver,))
    owner_page = await open_page()
    await log_in(owner_page, owner)
    await open_channel(owner_page, channel.id, channel.name)
    await owner_page.get_by_role("button", name="Members").click()
    members = owner_page.get_by_role("list", name="Members").get_by_role("listitem")
    await expect(members).to_have_count(2)

    # By name, matched as logins are: case does not matter; unknown names are said so.
    await owner_page.get_by_label("Add a member").fill("no_such_person_here")
    await owner_page.get_by_role("button", name="Add", exact=True).click()
    await expect(owner_page.get_by_role("alert")).to_have_text("No user named no_such_person_here")
    await owner_page.get_by_label("Add a member").fill(guest.username.upper())
    await owner_page.get_by_role("button", name="Add", exact=True).click()
    await expect(members.filter(has_text=guest.username)).to_have_count(1)
    await expect(owner_page.get_by_label("Add a member")).to_have_value("")
    await expect(owner_page.get_by_role("alert")).to_have_count(0)
    await owner_page.get_by_role("button", name=f"Remove {guest.username}").click()
    await expect(members.filter(has_text=guest.username)).to_have_count(0)
    await expect(owner_page.get_by_role("button", name="Leave channel")).to_have_count(0)

    leaver_page = await open_page()
    accept_dialogs(leaver_page)
    await log_in(leaver_page, leaver)
    await open_channel(leaver_page, channel.id, channel.name)
    await leaver_page.get_by_role("button", name="Members").click()
    await leaver_page.get_by_role("button", name="Leave channel").click()
    await expect(leaver_page.get_by_role("heading", name="Browse channels")).to_be_visible()
    await expect(channel_link(leaver_page, channel.name)).to_have_count(0)

    listed = await owner.api.members.ListMembers(
        members_pb2.ListMembersRequest(channel_id=channel.id)
    )
    assert [m.username for m in listed.members] == [owner.username]


async def test_channel_settings_rename_describe_and_delete(
    open_page: OpenPage, people: People
) -> None:
    owner = await people.user("owner")
    channel = await people.channel(owner)
    page = await open_page()
    accept_dialogs(page)
    await log_in(page, owner)
    await open_channel(page, channel.id, channel.name)
    await page.get_by_role("button", name="Settings").click()
    renamed = unique("Переименован")
    await page.get_by_label("Name").fill(renamed)
    await page.get_by_label("Description").fill("Новое описание")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("complementary").get_by_role("status")).to_have_text("Saved")
    await expect(channel_link(page, renamed)).to_be_visible()

    await page.get_by_role("button", name="Delete channel").click()
    await expect(page.get_by_role("heading", name="Browse channels")).to_be_visible()
    await expect(channel_link(page, renamed)).to_have_count(0)
    listed = await owner.api.channels.ListChannels(channels_pb2.ListChannelsRequest(page_size=200))
    assert channel.id not in [c.id for c in listed.channels]


async def test_moderator_console_blocks_and_unblocks_and_reads_every_channel(
    open_page: OpenPage, people: People
) -> None:
    moderator, owner, troll = (
        await people.moderator(),
        await people.user("owner"),
        await people.user("troll"),
    )
    channel = await people.channel(owner, members=(troll,))
    said = unique("Сообщение")
    await post(owner, channel.id, said)
    troll_page, page = await open_page(), await open_page()
    await log_in(troll_page, troll)
    await log_in(page, moderator)

    await page.get_by_role("link", name="Moderation").click()
    await page.get_by_role("button", name=f"Block {troll.username}").click()
    row = page.get_by_role("row").filter(has_text=troll.username)
    await expect(row).to_contain_text("blocked")
    # The blocked user's session ends at once: back to the login form, with why.
    await expect(troll_page.get_by_role("button", name="Log in")).to_be_visible()
    await row.get_by_role("button", name=f"Unblock {troll.username}").click()
    await expect(row).not_to_contain_text("blocked")
    again = await people.login(troll.username, troll.password)
    me = await again.api.users.GetMe(users_pb2.GetMeRequest())
    assert me.is_active

    # Anyone by name, in no channel at all; blocked or not, as the server says.
    loner = await people.user("loner")
    await moderator.api.users.BlockUser(users_pb2.BlockUserRequest(user_id=loner.id))
    finder = page.get_by_role("form", name="Find a user")
    await finder.get_by_label("Username").fill(loner.username.upper())
    await finder.get_by_role("button", name="Find").click()
    found = page.get_by_role("region", name="Found user")
    await expect(found).to_contain_text(loner.username)
    await expect(found.get_by_role("status")).to_have_text("blocked")
    await found.get_by_role("button", name=f"Unblock {loner.username}").click()
    await expect(found.get_by_role("status")).to_have_text("active")
    assert (await people.login(loner.username, loner.password)).id == loner.id
    await found.get_by_role("button", name=f"Block {loner.username}").click()
    await expect(found.get_by_role("status")).to_have_text("blocked")
    await finder.get_by_label("Username").fill("nobody_by_that_name")
    await finder.get_by_role("button", name="Find").click()
    await expect(page.get_by_role("alert")).to_have_text("No user named nobody_by_that_name")
    await expect(found).to_have_count(0)

    # Every channel, members or not: the moderator reads this one.
    channels = page.get_by_role("list", name="All channels")
    await channels.get_by_role("link", name=channel.name).click()
    await expect(page.locator("#room-status")).to_have_text("Live")
    await expect(message(page, said)).to_be_visible()
