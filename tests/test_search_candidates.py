"""The newest matches, found in steps (domain/search.py's newest_matches), are
exactly those of one plain query over the whole history, whichever steps a
query and a caller take; and the queries that the GIN indexes answer alone
(words, pairs of adjacent words) let no match through their net."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast

import asyncpg
import pytest

from atomchat_server.domain import search
from atomchat_server.domain.search import ParsedQuery, Reach, newest_matches
from bench.search import fill
from devsupport import fresh_database

MESSAGES = 6000
# One message in this many is deleted.
DELETED_EVERY = 17
# Among this many latest messages, every third says "run tests".
CLUSTERED = 150
QUERIES = [
    "программистов",
    "running",
    "сервером",
    "ошибки",
    "встречей",
    "released",
    "редкослово17",
    "программисты сервер",
    "deploy tests",
    "задачи проекта",
    '"разработка базы"',
    '"run tests"',
    '"run the tests"',
    '"run tests" -bug',
    '"программисты программист"',
    '"deploy tests" review',
    "программист -сервер",
    "review -bug",
    'run -"deploy tests"',
    '"run tests" or ошибки',
    "-программист",
    "the",
    "нетакогослова",
]
# Steps of every kind: the latest messages enough, a further walk, the GIN index.
REACHES = [
    Reach(),
    Reach(latest=100, walk_max=800, walk_max_by_pairs=300),
    Reach(latest=400, walk_max=100_000, walk_max_by_pairs=2000),
    Reach(latest=100, walk_max=100_000, walk_max_by_pairs=100_000),
]
_PARSE = (
    "SELECT websearch_to_tsquery('russian', $1)::text AS tsquery,"
    " querytree(websearch_to_tsquery('russian', $1)) AS indexable"
)
_REFERENCE = (
    "SELECT m.id FROM messages m"
    " WHERE m.search @@ websearch_to_tsquery('russian', $1) AND m.deleted_at IS NULL"
    " AND m.channel_id = ANY($2::bigint[]) ORDER BY m.id DESC LIMIT $3"
)


@dataclass(frozen=True, slots=True)
class History:
    connection: asyncpg.Connection
    top: int
    callers: dict[str, list[int]]


@pytest.fixture(scope="module")
async def history(postgres_server_url: str) -> AsyncIterator[History]:
    """The search benchmark's kind of messages over 200 channels, some deleted,
    some edited."""
    async with fresh_database(postgres_server_url) as url:
        member_channels, _, _ = await fill(url, MESSAGES, random.Random(12))
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(
                "UPDATE messages SET content = '', deleted_at = now(), deleted_by = sender_id"
                " WHERE id % $1 = 0",
                DELETED_EVERY,
            )
            every = await connection.fetchval("SELECT array_agg(id ORDER BY id) FROM channels")
            top = await connection.fetchval("SELECT max(id) FROM messages")
            # A phrase frequent among the latest messages only: the walk, judging by
            # them, stops short, and the index finds the rest (edited rows also
            # move, so ids and places in the table part ways).
            await connection.execute(
                "UPDATE messages SET content = content || ' run tests'"
                " WHERE deleted_at IS NULL AND id > $1 AND id % 3 = 0",
                top - CLUSTERED,
            )
            callers = {
                "member": member_channels,
                "moderator": every,
                "one channel": member_channels[:1],
            }
            yield History(connection, top, callers)
        finally:
            await connection.close()


async def parse(connection: asyncpg.Connection, query: str) -> ParsedQuery:
    (row,) = await connection.fetch(_PARSE, query)
    return ParsedQuery(row["tsquery"], row["indexable"])


@pytest.mark.parametrize("reach", REACHES, ids=["default", "short", "long", "longest"])
@pytest.mark.parametrize("limit", [10, 200])
@pytest.mark.parametrize("caller", ["member", "moderator", "one channel"])
async def test_the_steps_find_what_one_query_over_everything_finds(
    history: History, reach: Reach, limit: int, caller: str
) -> None:
    readable = history.callers[caller]
    for query in QUERIES:
        parsed = await parse(history.connection, query)
        expected = [
            row["id"] for row in await history.connection.fetch(_REFERENCE, query, readable, limit)
        ]
        found = await newest_matches(
            history.connection, parsed, readable, history.top, limit=limit, reach=reach
        )
        assert found == expected, query


class RecordingConnection:
    """A connection that notes which of search's statements it ran."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection
        self.steps: list[str] = []

    async def fetch(self, statement: str, *arguments: object) -> list[asyncpg.Record]:
        names = {
            search._NEWEST_BETWEEN: "walk",
            search._NEWEST_BY_WORDS: "words",
            search._NEWEST_BY_WORD_PAIRS: "pairs",
        }
        self.steps.append(names[statement])
        return await self._connection.fetch(statement, *arguments)


async def test_the_comparison_takes_every_sequence_of_steps(history: History) -> None:
    taken: set[tuple[str, ...]] = set()
    for reach in REACHES:
        for limit in (10, 200):
            for readable in history.callers.values():
                for query in QUERIES:
                    recording = RecordingConnection(history.connection)
                    parsed = await parse(history.connection, query)
                    await newest_matches(
                        cast(asyncpg.Connection, recording),
                        parsed,
                        readable,
                        history.top,
                        limit=limit,
                        reach=reach,
                    )
                    taken.add(tuple(recording.steps))
    assert taken >= {
        ("walk",),
        ("walk", "walk"),
        ("walk", "words"),
        ("walk", "walk", "words"),
        ("walk", "pairs"),
        ("walk", "walk", "pairs"),
    }


async def test_the_loosened_query_matches_every_message_the_query_matches(
    history: History,
) -> None:
    for query in QUERIES:
        parsed = await parse(history.connection, query)
        missed = await history.connection.fetchval(
            "SELECT count(*) FROM messages"
            " WHERE search @@ $1::tsquery AND NOT search @@ $2::tsquery",
            parsed.tsquery,
            parsed.loosened,
        )
        assert missed == 0, query


async def test_the_word_pairs_are_in_every_message_the_query_matches(history: History) -> None:
    checked = 0
    for query in QUERIES:
        parsed = await parse(history.connection, query)
        if parsed.word_pairs is None:
            continue
        missed = await history.connection.fetchval(
            "SELECT count(*) FROM messages"
            " WHERE search @@ $1::tsquery AND NOT search_word_pairs(search) @@ $2::tsquery",
            parsed.tsquery,
            parsed.word_pairs,
        )
        assert missed == 0, query
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize(
    ("tsquery", "indexable", "loosened"),
    [
        ("'run' <-> 'test'", "'run' <-> 'test'", "'run' & 'test'"),
        ("'run' <2> 'test' | 'bug'", "'run' <2> 'test' | 'bug'", "'run' & 'test' | 'bug'"),
        ("'run' & !( 'deploy' <-> 'test' )", "'run'", "'run'"),
        ("!'run'", "T", "!'run'"),
        ("", "", ""),
        ("'a' <-> !'b'", "'a' <-> !'b'", "'a' <-> !'b'"),
        ("'x<->y' <-> 'it''s'", "'x<->y' <-> 'it''s'", "'x<->y' & 'it''s'"),
    ],
)
def test_a_query_is_loosened_only_where_that_cannot_lose_a_match(
    tsquery: str, indexable: str, loosened: str
) -> None:
    assert ParsedQuery(tsquery, indexable).loosened == loosened


@pytest.mark.parametrize(
    ("indexable", "pairs"),
    [
        ("'run' <-> 'test'", "'run test'"),
        ("'o' <-> 'neil' <-> 'test' & 'bug'", "'o neil' & 'neil test'"),
        ("'run' <2> 'test'", None),
        ("'run' <2> 'fast' <-> 'test'", "'fast test'"),
        ("'a' <-> ( 'b' & 'c' )", None),
        ("'a' <-> ( 'b' <-> 'c' )", "'b c'"),
        ("'run' <-> 'test' | 'deploy'", None),
        ("'run' & 'test'", None),
        ("'it''s' <-> 'x<->y'", "'it''s x<->y'"),
        ("T", None),
        ("", None),
    ],
)
def test_a_phrase_is_looked_up_by_its_adjacent_words_only_where_all_must_match(
    indexable: str, pairs: str | None
) -> None:
    assert ParsedQuery(indexable, indexable).word_pairs == pairs
