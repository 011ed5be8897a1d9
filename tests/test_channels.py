"""ChannelService (SPEC §4): create, list, look up, update and delete channels."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

import grpc
import pytest
from atomchat.v1 import channels_pb2, chat_pb2, join_requests_pb2, members_pb2, resources_pb2
from google.protobuf import field_mask_pb2

from atomchat_server.domain.channels import make_slug
from tests.chat_support import post
from tests.support import (
    People,
    Person,
    all_channel_ids,
    all_pages,
    fails,
    my_channel_ids,
    sql,
    unique,
)

NOT_FOUND = grpc.StatusCode.NOT_FOUND
NAME_TAKEN = "Channel with this name already exists"


def tag() -> str:
    return uuid.uuid4().hex[:8]


async def create(person: Person, name: str, description: str = "") -> resources_pb2.Channel:
    channel: resources_pb2.Channel = await person.api.channels.CreateChannel(
        channels_pb2.CreateChannelRequest(name=name, description=description)
    )
    return channel


async def detail(person: Person, slug: str) -> channels_pb2.ChannelDetail:
    found: channels_pb2.ChannelDetail = await person.api.channels.GetChannel(
        channels_pb2.GetChannelRequest(slug=slug)
    )
    return found


def update(channel_id: int, *paths: str, **fields: str) -> channels_pb2.UpdateChannelRequest:
    return channels_pb2.UpdateChannelRequest(
        channel_id=channel_id, update_mask=field_mask_pb2.FieldMask(paths=paths), **fields
    )


def forged_token(kind: str, position: Any) -> str:
    raw = json.dumps({"k": kind, "p": position}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# CreateChannel


async def test_create_channel_makes_the_creator_its_owner_and_only_member(people: People) -> None:
    owner = await people.user()
    name = unique("Channel")
    channel = await create(owner, name, "About things")
    assert channel.id > 0
    assert channel.name == name
    assert channel.description == "About things"
    assert channel.is_active
    assert channel.member_count == 1
    assert channel.owner_id == owner.id
    assert channel.HasField("created_at")
    assert await my_channel_ids(owner) == [channel.id]


def test_the_cyrillic_name_programmisty_slugs_to_programmisty() -> None:
    assert make_slug("Программисты") == "programmisty"


async def test_create_channel_transliterates_a_cyrillic_name_into_the_slug(
    people: People,
) -> None:
    owner = await people.user()
    suffix = tag()
    channel = await create(owner, f"Программисты {suffix}")
    assert channel.slug == f"programmisty-{suffix}"


async def test_create_channel_slugs_a_latin_name(people: People) -> None:
    owner = await people.user()
    suffix = tag()
    channel = await create(owner, f"  Rust & Go Fans {suffix} ")
    assert channel.name == f"Rust & Go Fans {suffix}"
    assert channel.slug == f"rust-go-fans-{suffix}"


async def test_create_channel_with_a_taken_name_is_already_exists(people: People) -> None:
    owner, other = await people.user(), await people.user()
    channel = await people.channel(owner)
    failure = await fails(
        other.api.channels.CreateChannel(channels_pb2.CreateChannelRequest(name=channel.name)),
        grpc.StatusCode.ALREADY_EXISTS,
        NAME_TAKEN,
    )
    assert failure.reason == "CHANNEL_NAME_TAKEN"


async def test_create_channel_named_like_a_seeded_one_is_already_exists(people: People) -> None:
    owner = await people.user()
    await fails(
        owner.api.channels.CreateChannel(channels_pb2.CreateChannelRequest(name="Программисты")),
        grpc.StatusCode.ALREADY_EXISTS,
        NAME_TAKEN,
    )


async def test_create_channel_whose_slug_is_taken_is_already_exists(people: People) -> None:
    owner = await people.user()
    suffix = tag()
    await create(owner, f"Data Science {suffix}")
    failure = await fails(
        owner.api.channels.CreateChannel(
            channels_pb2.CreateChannelRequest(name=f"data-science-{suffix}")
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        NAME_TAKEN,
    )
    assert failure.reason == "CHANNEL_NAME_TAKEN"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("", "Channel name must be 1-100 characters", id="empty"),
        pytest.param("   ", "Channel name must be 1-100 characters", id="blank"),
        pytest.param("x" * 101, "Channel name must be 1-100 characters", id="101-chars"),
        pytest.param("!!!", "Channel name must contain letters or digits", id="no-slug"),
    ],
)
async def test_create_channel_refuses_a_bad_name(people: People, name: str, message: str) -> None:
    owner = await people.user()
    failure = await fails(
        owner.api.channels.CreateChannel(channels_pb2.CreateChannelRequest(name=name)),
        grpc.StatusCode.INVALID_ARGUMENT,
        message,
    )
    assert failure.reason == "INVALID_NAME"
    assert [field for field, _ in failure.violations] == ["name"]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("abc\x00def", id="nul"),
        pytest.param("two\nlines", id="line-break"),
        pytest.param("bell\x07", id="bell"),
    ],
)
async def test_create_channel_refuses_control_characters_in_the_name(
    people: People, name: str
) -> None:
    owner = await people.user()
    failure = await fails(
        owner.api.channels.CreateChannel(channels_pb2.CreateChannelRequest(name=name)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Channel name must not contain control characters",
    )
    assert [field for field, _ in failure.violations] == ["name"]


async def test_create_channel_refuses_a_nul_in_the_description(people: People) -> None:
    owner = await people.user()
    failure = await fails(
        owner.api.channels.CreateChannel(
            channels_pb2.CreateChannelRequest(name=unique("Nul"), description="a\x00b")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Description must not contain NUL characters",
    )
    assert failure.reason == "INVALID_DESCRIPTION"
    assert [field for field, _ in failure.violations] == ["description"]


async def test_a_description_may_have_several_lines(people: People) -> None:
    owner = await people.user()
    channel = await create(owner, unique("Lines"), "first line\n\tsecond line")
    assert channel.description == "first line\n\tsecond line"


async def test_concurrent_creates_of_one_name_make_one_channel(people: People) -> None:
    first, second = await people.user(), await people.user()
    name = unique("Race")
    results = await asyncio.gather(
        create(first, name), create(second, name), return_exceptions=True
    )
    created = [r for r in results if isinstance(r, resources_pb2.Channel)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(created) == 1
    assert [r.code() for r in refused] == [grpc.StatusCode.ALREADY_EXISTS]
    assert [r.details() for r in refused] == [NAME_TAKEN]


# ListChannels and ListMyChannels


async def test_list_channels_shows_every_active_channel_including_seeded_ones(
    people: People,
) -> None:
    owner, viewer = await people.user(), await people.user()
    channel = await people.channel(owner)
    ids = await all_channel_ids(viewer)
    assert {1, 2, channel.id} <= set(ids)


async def test_list_channels_pages_in_id_order_without_repeats(people: People) -> None:
    owner, viewer = await people.user(), await people.user()
    made = [(await people.channel(owner)).id for _ in range(3)]

    async def fetch(token: str) -> Any:
        return await viewer.api.channels.ListChannels(
            channels_pb2.ListChannelsRequest(page_size=2, page_token=token)
        )

    channels, responses = await all_pages(fetch, "channels")
    ids = [c.id for c in channels]
    assert ids == sorted(set(ids))
    assert set(made) <= set(ids)
    assert all(len(r.channels) == 2 for r in responses[:-1])
    assert all(r.next_page_token for r in responses[:-1])
    assert responses[-1].next_page_token == ""


async def test_list_my_channels_shows_only_the_callers_channels(people: People) -> None:
    owner, member, outsider = await people.user(), await people.user(), await people.user()
    owned = await people.channel(owner, members=(member,))
    joined = await people.channel(outsider, members=(member,))
    await people.channel(outsider)
    assert await my_channel_ids(owner) == [owned.id]
    assert await my_channel_ids(member) == [owned.id, joined.id]


async def test_list_my_channels_pages_and_the_last_page_has_no_token(people: People) -> None:
    owner = await people.user()
    made = [(await people.channel(owner)).id for _ in range(3)]

    first = await owner.api.channels.ListMyChannels(channels_pb2.ListMyChannelsRequest(page_size=2))
    assert [c.id for c in first.channels] == made[:2]
    assert first.next_page_token
    second = await owner.api.channels.ListMyChannels(
        channels_pb2.ListMyChannelsRequest(page_size=2, page_token=first.next_page_token)
    )
    assert [c.id for c in second.channels] == made[2:]
    assert second.next_page_token == ""


async def test_a_page_that_ends_the_list_exactly_has_no_token(people: People) -> None:
    owner = await people.user()
    made = [(await people.channel(owner)).id for _ in range(2)]
    page = await owner.api.channels.ListMyChannels(channels_pb2.ListMyChannelsRequest(page_size=2))
    assert [c.id for c in page.channels] == made
    assert page.next_page_token == ""


async def test_lists_default_to_pages_of_50_and_cap_page_size_at_200(
    people: People,
) -> None:
    owner = await people.user()
    names = [unique("Many") for _ in range(201)]
    await asyncio.gather(*(create(owner, name) for name in names))

    default = await owner.api.channels.ListMyChannels(channels_pb2.ListMyChannelsRequest())
    assert len(default.channels) == 50
    assert default.next_page_token

    capped = await owner.api.channels.ListMyChannels(
        channels_pb2.ListMyChannelsRequest(page_size=1000)
    )
    assert len(capped.channels) == 200
    assert capped.next_page_token
    rest = await owner.api.channels.ListMyChannels(
        channels_pb2.ListMyChannelsRequest(page_size=1000, page_token=capped.next_page_token)
    )
    assert len(rest.channels) == 1
    assert rest.next_page_token == ""
    assert {c.name for c in (*capped.channels, *rest.channels)} == set(names)

    everyone = await owner.api.channels.ListChannels(
        channels_pb2.ListChannelsRequest(page_size=1000)
    )
    assert len(everyone.channels) == 200
    assert everyone.next_page_token


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("not-a-token", id="garbage"),
        pytest.param("%%%", id="not-base64"),
        pytest.param(forged_token("my_channels", 1), id="from-another-list"),
        pytest.param(forged_token("channels", "1"), id="position-not-a-number"),
        pytest.param(forged_token("channels", 10**30), id="position-out-of-range"),
        pytest.param(forged_token("channels", -(10**30)), id="negative-out-of-range"),
        pytest.param(forged_token("channels", True), id="position-a-boolean"),
        pytest.param(forged_token("channels", 1.5), id="position-a-fraction"),
        pytest.param(base64.urlsafe_b64encode(b"[" * 100_000).decode(), id="deeply-nested-json"),
    ],
)
async def test_list_channels_refuses_a_bad_page_token(people: People, token: str) -> None:
    viewer = await people.user()
    failure = await fails(
        viewer.api.channels.ListChannels(channels_pb2.ListChannelsRequest(page_token=token)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Invalid page token",
    )
    assert failure.violations == [("page_token", "Invalid page token")]


async def test_list_my_channels_refuses_a_bad_page_token(people: People) -> None:
    viewer = await people.user()
    await fails(
        viewer.api.channels.ListMyChannels(
            channels_pb2.ListMyChannelsRequest(page_token=forged_token("channels", 1))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Invalid page token",
    )


async def test_a_negative_page_size_is_invalid(people: People) -> None:
    viewer = await people.user()
    failure = await fails(
        viewer.api.channels.ListChannels(channels_pb2.ListChannelsRequest(page_size=-1)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_size must not be negative",
    )
    assert [field for field, _ in failure.violations] == ["page_size"]


# GetChannel


async def test_get_channel_shows_members_owner_first_to_a_member(people: People) -> None:
    owner, first, second = await people.user(), await people.user(), await people.user()
    created = await people.channel(owner, members=(first, second), description="Hello")

    found = await detail(second, created.slug)
    assert found.channel.id == created.id
    assert found.channel.description == "Hello"
    assert found.channel.member_count == 3
    assert found.channel.owner_id == owner.id
    assert (found.owner.id, found.owner.username) == (owner.id, owner.username)
    assert [(m.user_id, m.username, m.is_owner) for m in found.members] == [
        (owner.id, owner.username, True),
        (first.id, first.username, False),
        (second.id, second.username, False),
    ]
    assert all(m.HasField("joined_at") for m in found.members)


async def test_get_channel_shows_members_to_a_moderator_who_is_not_one(people: People) -> None:
    owner, member, moderator = await people.user(), await people.user(), await people.moderator()
    created = await people.channel(owner, members=(member,))
    found = await detail(moderator, created.slug)
    assert [m.user_id for m in found.members] == [owner.id, member.id]


async def test_get_channel_hides_the_members_from_an_outsider(people: People) -> None:
    """ListMembers refuses outsiders; GetChannel must not list them either."""
    owner, member, outsider = await people.user(), await people.user(), await people.user()
    created = await people.channel(owner, members=(member,), description="Hello")
    found = await detail(outsider, created.slug)
    assert (found.channel.id, found.channel.member_count) == (created.id, 2)
    assert (found.owner.id, found.owner.username) == (owner.id, owner.username)
    assert list(found.members) == []


async def test_get_channel_with_an_unknown_slug_is_not_found(people: People) -> None:
    viewer = await people.user()
    failure = await fails(
        viewer.api.channels.GetChannel(channels_pb2.GetChannelRequest(slug="no-such-" + tag())),
        NOT_FOUND,
        "Channel not found",
    )
    assert failure.reason == "CHANNEL_NOT_FOUND"


async def test_get_channel_with_a_nul_in_the_slug_is_not_found(people: People) -> None:
    viewer = await people.user()
    await fails(
        viewer.api.channels.GetChannel(channels_pb2.GetChannelRequest(slug="program\x00misty")),
        NOT_FOUND,
        "Channel not found",
    )


# UpdateChannel


async def test_owner_renames_a_channel_and_it_is_re_slugged(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    suffix = tag()
    renamed = await owner.api.channels.UpdateChannel(
        update(channel.id, "name", name=f"Новое имя {suffix}")
    )
    assert renamed.name == f"Новое имя {suffix}"
    assert renamed.slug == f"novoe-imia-{suffix}"
    assert (await detail(owner, renamed.slug)).channel.id == channel.id
    await fails(
        owner.api.channels.GetChannel(channels_pb2.GetChannelRequest(slug=channel.slug)),
        NOT_FOUND,
        "Channel not found",
    )


async def test_update_changes_only_the_fields_in_the_mask(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner, description="old")
    updated = await owner.api.channels.UpdateChannel(
        update(channel.id, "description", name=unique("Ignored"), description="new")
    )
    assert updated.name == channel.name
    assert updated.slug == channel.slug
    assert updated.description == "new"


async def test_update_without_a_mask_changes_the_fields_given(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner, description="old")
    updated = await owner.api.channels.UpdateChannel(update(channel.id, description="new"))
    assert (updated.name, updated.description) == (channel.name, "new")


async def test_update_with_a_mask_may_clear_the_description(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner, description="old")
    updated = await owner.api.channels.UpdateChannel(update(channel.id, "description"))
    assert updated.description == ""


async def test_update_with_an_unknown_field_in_the_mask_is_invalid(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    failure = await fails(
        owner.api.channels.UpdateChannel(update(channel.id, "owner_id", name="x")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Cannot update owner_id; updatable: name, description",
    )
    assert failure.reason == "INVALID_UPDATE_MASK"
    assert [field for field, _ in failure.violations] == ["update_mask"]


async def test_update_with_nothing_to_change_is_invalid(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    failure = await fails(
        owner.api.channels.UpdateChannel(update(channel.id)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Nothing to update: give name or description",
    )
    assert failure.reason == "EMPTY_UPDATE"


async def test_update_refuses_control_characters_and_nul(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    await fails(
        owner.api.channels.UpdateChannel(update(channel.id, "name", name="bad\x00name")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Channel name must not contain control characters",
    )
    await fails(
        owner.api.channels.UpdateChannel(update(channel.id, "description", description="\x00")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Description must not contain NUL characters",
    )


async def test_renaming_to_a_taken_name_is_already_exists(people: People) -> None:
    owner = await people.user()
    channel, other = await people.channel(owner), await people.channel(owner)
    await fails(
        owner.api.channels.UpdateChannel(update(channel.id, "name", name=other.name)),
        grpc.StatusCode.ALREADY_EXISTS,
        NAME_TAKEN,
    )


async def test_renaming_a_channel_to_its_own_name_keeps_it(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    updated = await owner.api.channels.UpdateChannel(update(channel.id, "name", name=channel.name))
    assert (updated.name, updated.slug) == (channel.name, channel.slug)


async def test_setting_the_same_name_keeps_a_slug_made_elsewhere(people: People) -> None:
    """Like the seeded `Дизайнеры`, whose slug `dizayneri` came from another transliteration."""
    owner = await people.user()
    suffix = tag()
    channel = await create(owner, f"Дизайнеры {suffix}")
    assert channel.slug == f"dizainery-{suffix}"
    await sql(
        people.database_url,
        "UPDATE channels SET slug = $1 WHERE id = $2",
        f"dizayneri-{suffix}",
        channel.id,
    )
    updated = await owner.api.channels.UpdateChannel(
        update(channel.id, "name", "description", name=channel.name, description="new")
    )
    assert (updated.name, updated.slug, updated.description) == (
        channel.name,
        f"dizayneri-{suffix}",
        "new",
    )
    same = await owner.api.channels.UpdateChannel(update(channel.id, "name", name=channel.name))
    assert same.slug == f"dizayneri-{suffix}"


async def test_updating_an_unknown_channel_is_not_found(people: People) -> None:
    owner = await people.user()
    failure = await fails(
        owner.api.channels.UpdateChannel(update(10**12, "name", name=unique("Ghost"))),
        NOT_FOUND,
        "Channel not found",
    )
    assert failure.reason == "CHANNEL_NOT_FOUND"


async def test_a_member_who_is_not_the_owner_cannot_update(people: People) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    failure = await fails(
        member.api.channels.UpdateChannel(update(channel.id, "description", description="mine")),
        grpc.StatusCode.PERMISSION_DENIED,
        "Not enough permissions",
    )
    assert failure.reason == "CHANNEL_OWNER_REQUIRED"


async def test_a_moderator_may_update_any_channel(people: People) -> None:
    owner, moderator = await people.user(), await people.moderator()
    channel = await people.channel(owner)
    updated = await moderator.api.channels.UpdateChannel(
        update(channel.id, "description", description="moderated")
    )
    assert updated.description == "moderated"
    assert updated.owner_id == owner.id


# DeleteChannel


async def test_owner_deletes_a_channel_and_it_disappears_everywhere(people: People) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    await owner.api.channels.DeleteChannel(channels_pb2.DeleteChannelRequest(channel_id=channel.id))

    assert channel.id not in await all_channel_ids(owner)
    assert await my_channel_ids(owner) == []
    assert await my_channel_ids(member) == []
    await fails(
        owner.api.channels.GetChannel(channels_pb2.GetChannelRequest(slug=channel.slug)),
        NOT_FOUND,
        "Channel not found",
    )


async def test_a_deleted_channel_keeps_its_data(people: People) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    await post(member, channel.id, "kept for the record")
    await owner.api.channels.DeleteChannel(channels_pb2.DeleteChannelRequest(channel_id=channel.id))

    row = (await sql(people.database_url, "SELECT * FROM channels WHERE id = $1", channel.id))[0]
    assert (row["name"], row["is_active"], row["member_count"]) == (channel.name, False, 2)
    members = await sql(
        people.database_url,
        "SELECT user_id FROM channel_members WHERE channel_id = $1 ORDER BY id",
        channel.id,
    )
    assert [r["user_id"] for r in members] == [owner.id, member.id]
    messages = await sql(
        people.database_url, "SELECT content FROM messages WHERE channel_id = $1", channel.id
    )
    assert [r["content"] for r in messages] == ["kept for the record"]


async def test_a_deleted_channel_cannot_be_used(people: People) -> None:
    owner, member, outsider = await people.user(), await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    await owner.api.channels.DeleteChannel(channels_pb2.DeleteChannelRequest(channel_id=channel.id))

    calls = [
        owner.api.channels.UpdateChannel(update(channel.id, "description", description="x")),
        owner.api.channels.DeleteChannel(channels_pb2.DeleteChannelRequest(channel_id=channel.id)),
        member.api.members.ListMembers(members_pb2.ListMembersRequest(channel_id=channel.id)),
        outsider.api.join_requests.CreateJoinRequest(
            join_requests_pb2.CreateJoinRequestRequest(channel_id=channel.id)
        ),
        member.api.chat.ListMessages(chat_pb2.ListMessagesRequest(channel_id=channel.id)),
    ]
    for call in calls:
        await fails(call, NOT_FOUND, "Channel not found")


async def test_a_deleted_channels_name_may_be_used_again(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    await owner.api.channels.DeleteChannel(channels_pb2.DeleteChannelRequest(channel_id=channel.id))
    again = await create(owner, channel.name)
    assert again.id != channel.id
    assert again.slug == channel.slug
    assert (await detail(owner, channel.slug)).channel.id == again.id


async def test_a_member_who_is_not_the_owner_cannot_delete(people: People) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    failure = await fails(
        member.api.channels.DeleteChannel(channels_pb2.DeleteChannelRequest(channel_id=channel.id)),
        grpc.StatusCode.PERMISSION_DENIED,
        "Not enough permissions",
    )
    assert failure.reason == "CHANNEL_OWNER_REQUIRED"
    assert channel.id in await my_channel_ids(owner)


async def test_a_moderator_may_delete_any_channel(people: People) -> None:
    owner, moderator = await people.user(), await people.moderator()
    channel = await people.channel(owner)
    await moderator.api.channels.DeleteChannel(
        channels_pb2.DeleteChannelRequest(channel_id=channel.id)
    )
    assert await my_channel_ids(owner) == []


async def test_deleting_an_unknown_channel_is_not_found(people: People) -> None:
    owner = await people.user()
    await fails(
        owner.api.channels.DeleteChannel(channels_pb2.DeleteChannelRequest(channel_id=10**12)),
        NOT_FOUND,
        "Channel not found",
    )
