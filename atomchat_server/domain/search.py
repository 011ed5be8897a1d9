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
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from atomchat_server.domain import errors, pagination, timeline_store
from atomchat_server.domain.channels import open_for_reading
from atomchat_server.domain.entities import Actor, MessageView, Page

QUERY_MAX = 256
# Relevance ranks the newest matches, at most this many: a word in one message
# in ten costs as little as a rare one, however long the history.
CANDIDATES = 200
RECENT_WINDOW = 50_000
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
_READABLE = (
    "SELECT coalesce(array_agg(c.id), '{}') FROM channels c WHERE c.is_active AND ($2 OR EXISTS ("
    " SELECT 1 FROM channel_members cm WHERE cm.channel_id = c.id AND cm.user_id = $1))"
    " AND ($3::bigint IS NULL OR c.id = $3)"
)
# The newest matches among the latest RECENT_WINDOW messages: whichever way
# the planner takes (backwards by id for a common word, the GIN index for a
# rarer one), it reads at most that window.
_RECENT_MATCHES = (
    "SELECT m.id FROM messages m"
    " WHERE m.search @@ websearch_to_tsquery('russian', $1) AND m.deleted_at IS NULL"
    " AND m.channel_id = ANY($2::bigint[])"
    " AND m.id > (SELECT coalesce(max(id), 0) FROM messages) - $3"
    " ORDER BY m.id DESC LIMIT $4"
)
# Older matches when the window held too few: they are sparse then, so through
# the GIN index only (`id + 0` keeps the planner off a backwards scan of everything).
_OLDER_MATCHES = (
    "SELECT m.id FROM messages m"
    " WHERE m.search @@ websearch_to_tsquery('russian', $1) AND m.deleted_at IS NULL"
    " AND m.channel_id = ANY($2::bigint[])"
    " AND m.id <= (SELECT coalesce(max(id), 0) FROM messages) - $3"
    " ORDER BY m.id + 0 DESC LIMIT $4"
)
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


@dataclass(frozen=True, slots=True)
class Found:
    message: MessageView
    snippet: str


def _clean_query(query: str) -> str:
    cleaned = query.strip()
    if not 1 <= len(cleaned) <= QUERY_MAX or "\x00" in cleaned:
        raise errors.InvalidArgument(
            f"query must be 1-{QUERY_MAX} characters",
            reason=errors.Reason.INVALID_QUERY,
            field="query",
        )
    return cleaned


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
    readable = await connection.fetchval(_READABLE, actor.user_id, actor.is_moderator, channel_id)
    candidates = [
        row["id"]
        for row in await connection.fetch(
            _RECENT_MATCHES, cleaned, readable, RECENT_WINDOW, CANDIDATES
        )
    ]
    if len(candidates) < CANDIDATES:
        candidates += [
            row["id"]
            for row in await connection.fetch(
                _OLDER_MATCHES, cleaned, readable, RECENT_WINDOW, CANDIDATES - len(candidates)
            )
        ]
    rows = await connection.fetch(_RANKED, cleaned, candidates, cursor.fetch, offset)
    # The position after a result is how many results come up to it.
    numbered = [
        (offset + number, Found(timeline_store.message_view(row), row["snippet"]))
        for number, row in enumerate(rows, start=1)
    ]
    return cursor.page(numbered, lambda pair: pair[1], lambda pair: pair[0])
