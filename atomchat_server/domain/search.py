"""Full-text search over the messages a caller may read.

Each message carries a tsvector of its content in PostgreSQL's `russian`
configuration (stored, generated in the same statement as the content, GIN
indexed): Cyrillic words go through the Russian Snowball stemmer and Latin
words through the English one, so `программистов` finds `программисты` and
`running` finds `run`. Queries use web-search syntax. The newest 200 matches
are ranked by relevance (ts_rank_cd), then newest first (a query finds at
most 200 messages: narrow it to go further back); deleted messages never
match; the
caller's permission is part of the query itself (members read their
channels, moderators every channel), never a filter over someone else's page.
Snippets are the content HTML-escaped first, with each match then wrapped in
`<mark>`…`</mark>`.

The newest matches are found in at most three steps, each a statement whose
plan its shape fixes (see `newest_matches`): backwards through the latest
messages by id; further back by id while the matches found so far say that
the rest lies near; otherwise a GIN index over all older messages. A phrase
is looked up there by the pairs of adjacent words it holds (an index of
search_word_pairs(search)), or as its words ANDed when its words do not
stand next to each other; either way no word positions are needed, and the
phrase itself is tested only on the caller's readable messages found so.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from atomchat_server.domain import errors, pagination, timeline_store
from atomchat_server.domain.channels import open_for_reading
from atomchat_server.domain.entities import Actor, MessageView, Page

QUERY_MAX = 256
# Relevance ranks the newest matches, at most this many: a word in one message
# in ten costs as little as a rare one, however long the history.
CANDIDATES = 200
# A short message is its own snippet; a long one is cut to the fragments around
# its matches.
_WHOLE_OPTIONS = "StartSel=<mark>, StopSel=</mark>, HighlightAll=true"
_HEADLINE_OPTIONS = (
    "StartSel=<mark>, StopSel=</mark>, MaxWords=35, MinWords=12, ShortWord=2,"
    ' MaxFragments=2, FragmentDelimiter=" … "'
)
# The content with &, <, >, " and ' as HTML entities (PostgreSQL's parser keeps
# entities whole, so the headline's own <mark> tags are the only tags left).
_ESCAPED = (
    "replace(replace(replace(replace(replace(m.content,"
    " '&', '&amp;'), '<', '&lt;'), '>', '&gt;'), '\"', '&quot;'), '''', '&#39;')"
)
# In one round trip: the channels the caller may read, the newest message id,
# the query as a tsquery and its part that the GIN index can answer.
_PLAN = (
    "SELECT (SELECT coalesce(array_agg(c.id), '{}') FROM channels c"
    " WHERE c.is_active AND ($2 OR EXISTS (SELECT 1 FROM channel_members cm"
    " WHERE cm.channel_id = c.id AND cm.user_id = $1))"
    " AND ($3::bigint IS NULL OR c.id = $3)) AS readable,"
    " (SELECT coalesce(max(id), 0) FROM messages) AS top,"
    " websearch_to_tsquery('russian', $4)::text AS tsquery,"
    " querytree(websearch_to_tsquery('russian', $4)) AS indexable"
)
# Backwards by id through (low, high], testing each message: the match is a
# function call rather than the @@ operator, so that no index but the primary
# key's can serve it, whatever the planner guesses of how many rows match.
_NEWEST_BETWEEN = (
    "SELECT m.id FROM messages m"
    " WHERE ts_match_vq(m.search, $1::tsquery) AND m.deleted_at IS NULL"
    " AND m.channel_id = ANY($2::bigint[]) AND m.id > $3 AND m.id <= $4"
    " ORDER BY m.id DESC LIMIT $5"
)


def _newest_at_or_below(index_condition: str) -> str:
    """Every match at or below `high` that `index_condition` ($5, answered by a
    GIN index with no recheck of word positions) lets through, the channels
    through their index when the planner finds that cheaper; `id + 0` keeps the
    primary key out (a bitmap of most of the table costs more than it saves).
    The subquery is kept whole (OFFSET 0), so the exact query is tested only
    on the rows that passed every other condition."""
    return (
        "SELECT c.id FROM (SELECT m.id, m.search FROM messages m"  # noqa: S608 - made of constants only
        f" WHERE {index_condition} AND m.deleted_at IS NULL"
        " AND m.channel_id = ANY($2::bigint[]) AND m.id + 0 <= $3 OFFSET 0) c"
        " WHERE c.search @@ $1::tsquery ORDER BY c.id DESC LIMIT $4"
    )


# The query's words (its phrases loosened to ANDs), or the pairs of adjacent
# words its phrases hold (ix_messages_search_pairs).
_NEWEST_BY_WORDS = _newest_at_or_below("m.search @@ $5::tsquery")
_NEWEST_BY_WORD_PAIRS = _newest_at_or_below("search_word_pairs(m.search) @@ $5::tsquery")
_RANKED = (
    f"SELECT {timeline_store.MESSAGE_COLUMNS},"  # noqa: S608 - made of constants only
    " CASE WHEN char_length(m.content) <= 300"
    f" THEN ts_headline('russian', {_ESCAPED}, websearch_to_tsquery('russian', $1),"
    f" '{_WHOLE_OPTIONS}')"
    f" ELSE ts_headline('russian', {_ESCAPED}, websearch_to_tsquery('russian', $1),"
    f" '{_HEADLINE_OPTIONS}') END AS snippet"
    " FROM messages m JOIN users u ON u.id = m.sender_id"
    " WHERE m.id = ANY($2::bigint[])"
    " ORDER BY ts_rank_cd(m.search, websearch_to_tsquery('russian', $1)) DESC,"
    " m.created_at DESC, m.id DESC"
    " LIMIT $3 OFFSET $4"
)
# A quoted lexeme (kept whole, whatever it holds), a phrase operator, a negation,
# an OR, an AND, a parenthesis.
_TSQUERY_TOKEN = re.compile(r"'(?:[^']|'')*'|<(?:-|\d+)>|[!|&()]")


@dataclass(frozen=True, slots=True)
class Found:
    message: MessageView
    snippet: str


@dataclass(frozen=True, slots=True)
class Reach:
    """How far back by id the newest matches are walked to before the GIN index.

    A walk costs the same for each message it passes, match or not; the GIN
    index costs for each message matching the query's words anywhere in the
    history, whoever may read it. So the latest messages are always walked
    (cheap, and how many of them match tells how far back the rest lies), and
    the walk goes on only as far as `walk_max`.
    """

    latest: int = 20_000
    walk_max: int = 150_000
    # A query with a phrase whose words stand next to each other: the index of
    # word pairs finds about as many rows as there are matches, so walking on
    # pays only when the rest is near.
    walk_max_by_pairs: int = 50_000

    def further(self, missing: int, found: int, walked: int) -> int:
        """How far to walk on for `missing` matches at the rate of `found` in `walked`,
        with a quarter to spare."""
        return max(self.latest, missing * walked * 5 // (found * 4))


REACH = Reach()


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    """A query as PostgreSQL parsed it: the tsquery and the part of it that the
    GIN index can answer (querytree's, without the negations), both as text."""

    tsquery: str
    indexable: str

    @property
    def loosened(self) -> str:
        """A tsquery that every match of this one matches too, answered by the
        GIN index alone: the indexable part with each phrase operator made an
        AND (a phrase needs word positions, which only the rows hold). The
        tsquery itself when nothing in it is indexable or a negation is left."""
        if self.indexable in ("", "T") or "!" in _TSQUERY_TOKEN.findall(self.indexable):
            return self.tsquery
        return _TSQUERY_TOKEN.sub(_phrase_to_and, self.indexable)

    @property
    def word_pairs(self) -> str | None:
        """The adjacent words that every match holds, as a tsquery of
        search_word_pairs' lexemes ANDed: each `'a' <-> 'b'` of the indexable
        part, when that part is ANDs only. None when there is no such pair."""
        tokens = _TSQUERY_TOKEN.findall(self.indexable)
        if self.indexable == "T" or "!" in tokens or "|" in tokens:
            return None
        pairs = [
            f"'{left[1:-1]} {right[1:-1]}'"
            for left, operator, right in zip(tokens, tokens[1:], tokens[2:], strict=False)
            if operator == "<->" and left.startswith("'") and right.startswith("'")
        ]
        return " & ".join(pairs) or None


def _phrase_to_and(token: re.Match[str]) -> str:
    return "&" if token.group().startswith("<") else token.group()


def _clean_query(query: str) -> str:
    cleaned = query.strip()
    if not 1 <= len(cleaned) <= QUERY_MAX or "\x00" in cleaned:
        raise errors.InvalidArgument(
            f"query must be 1-{QUERY_MAX} characters",
            reason=errors.Reason.INVALID_QUERY,
            field="query",
        )
    return cleaned


async def _walk(
    connection: asyncpg.Connection,
    query: ParsedQuery,
    readable: list[int],
    *,
    low: int,
    high: int,
    limit: int,
) -> list[int]:
    rows = await connection.fetch(_NEWEST_BETWEEN, query.tsquery, readable, low, high, limit)
    return [row["id"] for row in rows]


async def newest_matches(
    connection: asyncpg.Connection,
    query: ParsedQuery,
    readable: list[int],
    top: int,
    *,
    limit: int = CANDIDATES,
    reach: Reach = REACH,
) -> list[int]:
    """The ids of the newest `limit` undeleted messages with ids up to `top` in the
    `readable` channels that match `query`, newest first."""
    if not query.tsquery:  # stop words only
        return []
    pairs = query.word_pairs
    low = max(0, top - reach.latest)
    found = await _walk(connection, query, readable, low=low, high=top, limit=limit)
    if found and len(found) < limit and low > 0:
        further = reach.further(limit - len(found), len(found), top - low)
        if further <= (reach.walk_max if pairs is None else reach.walk_max_by_pairs):
            high, low = low, max(0, low - further)
            found += await _walk(
                connection, query, readable, low=low, high=high, limit=limit - len(found)
            )
    if len(found) == limit or low == 0:
        return found
    statement, index_query = (
        (_NEWEST_BY_WORDS, query.loosened) if pairs is None else (_NEWEST_BY_WORD_PAIRS, pairs)
    )
    rows = await connection.fetch(
        statement, query.tsquery, readable, low, limit - len(found), index_query
    )
    return found + [row["id"] for row in rows]


async def search_messages(
    session: AsyncSession,
    *,
    actor: Actor,
    query: str,
    channel_id: int | None,
    page_size: int,
    page_token: str,
) -> Page[Found]:
    cleaned = _clean_query(query)
    if channel_id is not None:
        await open_for_reading(session, actor=actor, channel_id=channel_id)
    fingerprint = hashlib.sha256(f"{cleaned}\x00{channel_id}".encode()).hexdigest()[:16]
    cursor = pagination.Cursor.read(f"search:{fingerprint}", page_size, page_token)
    offset = cursor.position or 0
    connection = await timeline_store.raw_connection(session)
    (plan,) = await connection.fetch(_PLAN, actor.user_id, actor.is_moderator, channel_id, cleaned)
    candidates = await newest_matches(
        connection,
        ParsedQuery(plan["tsquery"], plan["indexable"]),
        plan["readable"],
        plan["top"],
    )
    rows = await connection.fetch(_RANKED, cleaned, candidates, cursor.fetch, offset)
    # The position after a result is how many results come up to it.
    numbered = [
        (offset + number, Found(timeline_store.message_view(row), row["snippet"]))
        for number, row in enumerate(rows, start=1)
    ]
    return cursor.page(numbered, lambda pair: pair[1], lambda pair: pair[0])
