"""The benchmark's own database (devsupport makes it fresh, migrated, and drops it),
filled directly.

Users, channels and memberships are written with SQL (a thousand logins
would cost a thousand password hashes); tokens are signed with the secret
the server under test is started with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from atomchat_server.auth.passwords import hash_now
from atomchat_server.auth.tokens import Tokens
from atomchat_server.domain.entities import UserView
from atomchat_server.domain.kinds import Role
from atomchat_server.domain.usernames import username_key
from devsupport import database_name

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
JWT_SECRET = "atomchat-bench-secret-" + "b" * 32
PASSWORD = "bench-password"
TOKEN_LIFETIME = timedelta(hours=6)
# Servers under test issue (and so accept) tokens of this lifetime.
TOKEN_MINUTES = int(TOKEN_LIFETIME.total_seconds() // 60)


@dataclass(frozen=True, slots=True)
class BenchUser:
    id: int
    username: str
    token: str


def server_url() -> str:
    """The PostgreSQL server the benchmark makes its database on."""
    return os.environ.get("DATABASE_URL") or DEFAULT_SERVER


class BenchDatabase:
    """A migrated, empty database at `url`, filled for the benchmark."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = database_name(url)
        self._channels = 0

    async def add_users(self, count: int) -> list[BenchUser]:
        """`count` users, all with password PASSWORD, each with a signed token."""
        connection = await asyncpg.connect(self.url)
        try:
            names = [f"bench_{number}" for number in range(1, count + 1)]
            rows = await connection.fetch(
                "INSERT INTO users (username, username_key, hashed_password)"
                " SELECT name, key, $3 FROM unnest($1::text[], $2::text[]) AS u(name, key)"
                " RETURNING id, username, created_at",
                names,
                [username_key(name) for name in names],
                hash_now(PASSWORD),
            )
        finally:
            await connection.close()
        tokens = Tokens(secret=JWT_SECRET, lifetime=TOKEN_LIFETIME)
        now = datetime.now(UTC)
        users = []
        for row in rows:
            view = UserView(
                id=row["id"],
                username=row["username"],
                role=Role.USER,
                is_active=True,
                created_at=row["created_at"],
            )
            users.append(BenchUser(row["id"], row["username"], tokens.issue(view, now=now).token))
        return users

    async def add_channels(self, members: list[list[BenchUser]]) -> list[int]:
        """One new channel per list of members; the first member owns it."""
        connection = await asyncpg.connect(self.url)
        try:
            async with connection.transaction():
                names = [f"bench-{self._channels + i}" for i in range(len(members))]
                self._channels += len(members)
                rows = await connection.fetch(
                    "INSERT INTO channels (name, slug, member_count)"
                    " SELECT name, name, count"
                    " FROM unnest($1::text[], $2::int[]) AS t(name, count)"
                    " RETURNING id, name",
                    names,
                    [len(people) for people in members],
                )
                by_name = {row["name"]: row["id"] for row in rows}
                ids: list[int] = [by_name[name] for name in names]
                channel_ids, user_ids, owners = [], [], []
                for channel_id, people in zip(ids, members, strict=True):
                    for index, person in enumerate(people):
                        channel_ids.append(channel_id)
                        user_ids.append(person.id)
                        owners.append(index == 0)
                await connection.execute(
                    "INSERT INTO channel_members (channel_id, user_id, is_owner)"
                    " SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bool[])",
                    channel_ids,
                    user_ids,
                    owners,
                )
        finally:
            await connection.close()
        return ids
