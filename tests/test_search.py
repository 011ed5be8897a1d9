"""Message search: Russian and English stemming, only over channels the caller
may read, ranked, paged, with HTML-safe snippets."""

from __future__ import annotations

import uuid

import grpc
import pytest
from atomchat.v1 import chat_pb2, resources_pb2

from tests.chat_support import post
from tests.support import People, Person, fails


async def search(
    person: Person, query: str, *, channel_id: int = 0, page_size: int = 0, token: str = ""
) -> chat_pb2.SearchMessagesResponse:
    found: chat_pb2.SearchMessagesResponse = await person.api.chat.SearchMessages(
        chat_pb2.SearchMessagesRequest(
            query=query, channel_id=channel_id, page_size=page_size, page_token=token
        )
    )
    return found


def ids(response: chat_pb2.SearchMessagesResponse) -> list[int]:
    return [result.message.id for result in response.results]


_DIGITS_AS_LETTERS = str.maketrans("0123456789", "ghijklmnop")


def word() -> str:
    """A word no other test writes (letters only, so that it is one token)."""
    return "w" + uuid.uuid4().hex.translate(_DIGITS_AS_LETTERS) + "zq"


async def test_russian_and_english_words_are_found_by_their_other_forms(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    tag = word()
    russian = await post(owner, channel.id, f"Тут собрались программисты {tag}")
    english = await post(owner, channel.id, f"She was running home {tag}")
    assert ids(await search(owner, f"программистов {tag}")) == [russian.id]
    assert ids(await search(owner, f"run {tag}")) == [english.id]
    assert ids(await search(owner, f'"running home" {tag}')) == [english.id]
    assert ids(await search(owner, f"{tag} -программист")) == [english.id]


async def test_an_outsider_never_finds_a_private_channels_messages(people: People) -> None:
    owner, outsider, moderator = await people.user(), await people.user(), await people.moderator()
    private = await people.channel(owner)
    tag = word()
    secret = await post(owner, private.id, f"secret plans {tag}")
    assert ids(await search(outsider, tag)) == []
    await fails(search(outsider, tag, channel_id=private.id), grpc.StatusCode.PERMISSION_DENIED)
    assert ids(await search(owner, tag)) == [secret.id]
    assert ids(await search(moderator, tag)) == [secret.id], "moderators read every channel"
    assert ids(await search(owner, tag, channel_id=private.id)) == [secret.id]


async def test_deleted_messages_never_match_and_edits_match_at_once(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    before, after = word(), word()
    message = await post(owner, channel.id, f"first draft {before}")
    assert ids(await search(owner, before)) == [message.id]
    await owner.api.chat.EditMessage(
        chat_pb2.EditMessageRequest(
            channel_id=channel.id, message_id=message.id, content=f"final {after}"
        )
    )
    assert ids(await search(owner, before)) == []
    assert ids(await search(owner, after)) == [message.id]
    await owner.api.chat.DeleteMessage(
        chat_pb2.DeleteMessageRequest(channel_id=channel.id, message_id=message.id)
    )
    assert ids(await search(owner, after)) == []


async def test_best_matches_come_first_then_the_newest(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    tag = word()
    weak = await post(owner, channel.id, f"{tag} once, among many other words of no interest")
    strong = await post(owner, channel.id, f"{tag} {tag} {tag}")
    older_equal = await post(owner, channel.id, f"{tag} twice {tag}")
    newer_equal = await post(owner, channel.id, f"{tag} twice {tag}")
    found = ids(await search(owner, tag))
    assert found[0] == strong.id
    assert found.index(newer_equal.id) < found.index(older_equal.id)
    assert found[-1] == weak.id


async def test_snippets_escape_the_content_and_mark_the_matches(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    tag = word()
    await post(owner, channel.id, f'<script>alert("x")</script> & {tag} <b>bold</b>')
    (result,) = (await search(owner, tag)).results
    assert f"<mark>{tag}</mark>" in result.snippet
    assert "<script>" not in result.snippet
    assert "&lt;script&gt;" in result.snippet
    assert "&amp;" in result.snippet
    assert result.snippet.replace(f"<mark>{tag}</mark>", "").count("<") == 0
    filler = " ".join(["<i>filler</i> & more"] * 40)
    await post(owner, channel.id, f"{filler} {tag}s {filler}")
    snippets = [r.snippet for r in (await search(owner, tag)).results]
    long = next(snippet for snippet in snippets if "filler" in snippet)
    assert f"<mark>{tag}s</mark>" in long
    assert long.replace(f"<mark>{tag}s</mark>", "").count("<") == 0
    assert len(long) < 600


async def test_results_come_in_pages(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    tag = word()
    posted: list[resources_pb2.Message] = [
        await post(owner, channel.id, f"{tag} number {n}") for n in range(5)
    ]
    first = await search(owner, tag, page_size=2)
    second = await search(owner, tag, page_size=2, token=first.next_page_token)
    third = await search(owner, tag, page_size=2, token=second.next_page_token)
    assert (len(first.results), len(second.results), len(third.results)) == (2, 2, 1)
    assert third.next_page_token == ""
    assert sorted(ids(first) + ids(second) + ids(third)) == sorted(m.id for m in posted)
    await fails(
        search(owner, "something else", page_size=2, token=first.next_page_token),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


@pytest.mark.parametrize("query", ["", "   ", "x" * 257, "nul\x00"])
async def test_a_query_must_be_1_to_256_characters(people: People, query: str) -> None:
    owner = await people.user()
    failure = await fails(search(owner, query), grpc.StatusCode.INVALID_ARGUMENT)
    assert failure.reason == "INVALID_QUERY"


async def test_queries_of_operators_only_find_nothing_and_fail_nothing(people: People) -> None:
    owner = await people.user()
    for query in ('"', "-", "or", "!!!", "&|<>", '" or "', "the"):
        assert ids(await search(owner, query)) == []
