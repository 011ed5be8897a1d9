"""The demo data of the original project (SPEC §5), idempotent.

Seeding an empty database inserts exactly these rows with these ids; seeding
a database that holds them already changes nothing and says so; a database
with other users in it is left alone with an error.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from atomchat_server.auth.passwords import hash_now
from atomchat_server.db.engine import Database
from atomchat_server.db.models import Channel, ChannelJoinRequest, ChannelMember, Message, User
from atomchat_server.domain.kinds import Role
from atomchat_server.domain.usernames import username_key

PASSWORD = "1234"

USERS = (
    (1, "moderator", Role.MODERATOR),
    (2, "programmer_creator", Role.USER),
    (3, "designer_creator", Role.USER),
    (4, "user_program", Role.USER),
    (5, "user_design", Role.USER),
    (6, "user1", Role.USER),
    (7, "user2", Role.USER),
)
CHANNELS = (
    (1, "Программисты", "programmisty", "Канал для программистов", 2, (4,)),
    (2, "Дизайнеры", "dizayneri", "Канал для дизайнеров", 3, (5,)),
)
JOIN_REQUESTS = ((1, 1, 6),)  # (id, channel, user): user1 asks to join Программисты
MESSAGES = (
    (1, 2, "Привет всем, я создал этот канал!"),
    (1, 2, "Каковы ваши ожидания от этого канала?"),
    (1, 4, "Спасибо за возможность присоединиться к каналу!"),
    (1, 4, "Я уверен, что мы тут найдем много интересного!"),
    (2, 1, "Добро пожаловать в канал дизайнеров!"),
    (2, 1, "Какие идеи у нас есть для улучшения дизайна?"),
    (2, 5, "Я рад быть частью этого канала!"),
    (2, 5, "Мне очень интересно поработать с вами!"),
)


class SeedError(RuntimeError):
    """The database holds other data; seeding would clash with it."""


@dataclass(frozen=True, slots=True)
class SeedResult:
    inserted: bool

    def describe(self) -> str:
        if self.inserted:
            return (
                f"seeded {len(USERS)} users (password {PASSWORD!r}), {len(CHANNELS)} channels, "
                f"{len(JOIN_REQUESTS)} join request and {len(MESSAGES)} messages"
            )
        return "seed data already present; nothing changed"


async def seed(database: Database) -> SeedResult:
    async with database.transaction() as session:
        # One seeder at a time, even across processes.
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('atomchat.seed'))"))
        names = set((await session.scalars(select(User.username))).all())
        if names:
            if {name for _, name, _ in USERS} <= names:
                return SeedResult(inserted=False)
            raise SeedError("the database already has other users; seed an empty database")
        await _insert(session)
    return SeedResult(inserted=True)


async def _insert(session: AsyncSession) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    # Hashing is slow on purpose: off the event loop, which may be serving.
    hashes = await asyncio.to_thread(lambda: [hash_now(PASSWORD) for _ in USERS])
    await session.execute(
        insert(User),
        [
            {
                "id": uid,
                "username": name,
                "username_key": username_key(name),
                "role": role,
                "hashed_password": hashed,
            }
            for (uid, name, role), hashed in zip(USERS, hashes, strict=True)
        ],
    )
    await session.execute(
        insert(Channel),
        [
            {
                "id": cid,
                "name": name,
                "slug": slug,
                "description": description,
                "member_count": 1 + len(members),
                "last_seq": sum(1 for channel, _, _ in MESSAGES if channel == cid),
            }
            for cid, name, slug, description, _, members in CHANNELS
        ],
    )
    await session.execute(
        insert(ChannelMember),
        [
            {"channel_id": cid, "user_id": uid, "is_owner": uid == owner}
            for cid, _, _, _, owner, members in CHANNELS
            for uid in (owner, *members)
        ],
    )
    await session.execute(
        insert(ChannelJoinRequest),
        [{"id": rid, "channel_id": cid, "user_id": uid} for rid, cid, uid in JOIN_REQUESTS],
    )
    seqs: dict[int, int] = {}
    rows = []
    for index, (cid, sender, content) in enumerate(MESSAGES):
        seqs[cid] = seqs.get(cid, 0) + 1
        rows.append(
            {
                "channel_id": cid,
                "seq": seqs[cid],
                "sender_id": sender,
                "content": content,
                "created_at": start + timedelta(minutes=index),
            }
        )
    await session.execute(insert(Message), rows)
    # Rows inserted with explicit ids: move each identity past them.
    for table in (User, Channel, ChannelJoinRequest):
        following = int(await session.scalar(select(func.max(table.id))) or 0) + 1
        await session.execute(
            text(f"ALTER TABLE {table.__tablename__} ALTER COLUMN id RESTART WITH {following}")
        )
