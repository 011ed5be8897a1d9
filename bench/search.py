"""Search over a large timeline: p50/p99 of SearchMessages through the real server.

    python -m bench.search                      # 1,000,000 messages (a few minutes to fill)
    python -m bench.search --messages 100000 --rounds 20

The data: 200 channels of 10,000 messages of 6-20 words each, drawn from a
vocabulary of Russian and English words in several forms, each word with its
own frequency (Zipf-like), so that queries range from words in one message
in a hundred thousand to words in one message in ten. A member of 20 channels
and a moderator (every channel) search, in turn, for words of each frequency,
in their other forms (stemming at work), as phrases and with exclusions; the
report gives p50/p99/max per kind of query and overall, for each searcher.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import grpc
from atomchat.v1 import chat_pb2, chat_pb2_grpc

from atomchat_server.auth.tokens import Tokens
from atomchat_server.domain.entities import UserView
from atomchat_server.domain.kinds import Role
from bench.database import (
    JWT_SECRET,
    TOKEN_LIFETIME,
    TOKEN_MINUTES,
    BenchDatabase,
    server_url,
)
from bench.stats import summary
from devsupport import fresh_database, serve_atomchat

CHANNELS = 200
COPY_BATCH = 20_000
MEMBER_CHANNELS = 20
RESULTS = Path("bench/results")
# Stems with their forms; queries use another form than most messages do.
RUSSIAN = [
    ("программист", ["программист", "программисты", "программистов", "программисту"]),
    ("разработка", ["разработка", "разработки", "разработку", "разработкой"]),
    ("сервер", ["сервер", "сервера", "серверов", "сервером"]),
    ("база", ["база", "базы", "базу", "базой"]),
    ("данные", ["данные", "данных", "данными"]),
    ("встреча", ["встреча", "встречи", "встречу", "встречей"]),
    ("задача", ["задача", "задачи", "задачу", "задачей"]),
    ("проект", ["проект", "проекта", "проекты", "проектов"]),
    ("дизайн", ["дизайн", "дизайна", "дизайном"]),
    ("ошибка", ["ошибка", "ошибки", "ошибку", "ошибок"]),
]
ENGLISH = [
    ("run", ["run", "running", "runs", "ran"]),
    ("deploy", ["deploy", "deploys", "deployed", "deploying"]),
    ("test", ["test", "tests", "tested", "testing"]),
    ("review", ["review", "reviews", "reviewed", "reviewing"]),
    ("release", ["release", "releases", "released", "releasing"]),
    ("meeting", ["meeting", "meetings"]),
    ("bug", ["bug", "bugs"]),
    ("queue", ["queue", "queues", "queued"]),
    ("cache", ["cache", "caches", "cached", "caching"]),
    ("index", ["index", "indexes", "indexed", "indexing"]),
]
FILLER = [
    "и",
    "в",
    "не",
    "на",
    "я",
    "что",
    "тот",
    "быть",
    "с",
    "а",
    "весь",
    "это",
    "как",
    "она",
    "по",
    "но",
    "они",
    "к",
    "у",
    "ты",
    "из",
    "мы",
    "за",
    "вы",
    "так",
    "же",
    "от",
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "is",
    "it",
    "you",
    "that",
    "he",
    "was",
    "for",
    "on",
    "are",
    "with",
    "as",
    "his",
    "they",
    "be",
    "at",
    "one",
    "have",
]


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """Words with weights: word i of each list is ~ twice as rare as word i-1."""

    words: list[str]
    weights: list[float]

    @classmethod
    def make(cls) -> Vocabulary:
        words: list[str] = []
        weights: list[float] = []
        for rank, (_, forms) in enumerate([*RUSSIAN, *ENGLISH]):
            for form in forms:
                words.append(form)
                weights.append(1.0 / (2 ** (rank % 10)))
        for index in range(2000):
            words.append(f"редкослово{index}")
            weights.append(0.002)
        for filler in FILLER:
            words.append(filler)
            weights.append(3.0)
        return cls(words, weights)

    def sentence(self, rng: random.Random) -> str:
        return " ".join(rng.choices(self.words, self.weights, k=rng.randint(6, 20)))


async def fill(url: str, messages: int, rng: random.Random) -> tuple[list[int], int, int]:
    """Users, channels and messages; returns (the member's channels, member id, moderator id)."""
    database = BenchDatabase(url)
    member, moderator, poster = await database.add_users(3)
    channels = await database.add_channels([[poster, member]] * MEMBER_CHANNELS)
    channels += await database.add_channels([[poster]] * (CHANNELS - MEMBER_CHANNELS))
    vocabulary = Vocabulary.make()
    per_channel = max(1, messages // CHANNELS)
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("UPDATE users SET role = 'moderator' WHERE id = $1", moderator.id)
        # Messages interleaved across channels as a day of chat is: each next one in
        # a channel chosen at random, so that ids grow with time across channels.
        start = datetime.now(UTC) - timedelta(days=30)
        seqs = dict.fromkeys(channels, 0)
        batch: list[tuple[int, int, int, str, datetime]] = []
        for number in range(per_channel * len(channels)):
            channel_id = rng.choice(channels)
            seqs[channel_id] += 1
            when = start + timedelta(seconds=number)
            batch.append((channel_id, seqs[channel_id], poster.id, vocabulary.sentence(rng), when))
            if len(batch) == COPY_BATCH:
                await _copy(connection, batch)
                batch = []
        await _copy(connection, batch)
        await connection.execute(
            "UPDATE channels SET last_seq = v.last_seq"
            " FROM unnest($1::bigint[], $2::bigint[]) AS v(id, last_seq) WHERE channels.id = v.id",
            list(seqs),
            list(seqs.values()),
        )
        await connection.execute("VACUUM ANALYZE messages")
    finally:
        await connection.close()
    return channels[:MEMBER_CHANNELS], member.id, moderator.id


async def _copy(
    connection: asyncpg.Connection, rows: list[tuple[int, int, int, str, datetime]]
) -> None:
    if rows:
        await connection.copy_records_to_table(
            "messages",
            records=rows,
            columns=["channel_id", "seq", "sender_id", "content", "created_at"],
        )


QUERIES = {
    "common word, other form": ["программистов", "running", "сервером"],
    "mid word, other form": ["ошибки", "indexing", "встречей", "released"],
    "rare word": ["редкослово17", "редкослово1234", "редкослово999"],
    "two words": ["программисты сервер", "deploy tests", "задачи проекта"],
    "phrase": ['"разработка базы"', '"run tests"'],
    "exclusion": ["программист -сервер", "review -bug"],
}


def token_for(user_id: int, role: Role) -> str:
    tokens = Tokens(secret=JWT_SECRET, lifetime=TOKEN_LIFETIME)
    view = UserView(
        id=user_id,
        username=f"searcher{user_id}",
        role=role,
        is_active=True,
        created_at=datetime.now(UTC),
    )
    return tokens.issue(view).token


async def measure(port: int, token: str, rounds: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {kind: [] for kind in QUERIES}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        metadata = (("authorization", f"Bearer {token}"),)
        for _ in range(rounds):
            for kind, queries in QUERIES.items():
                for query in queries:
                    started = time.perf_counter()
                    await stub.SearchMessages(
                        chat_pb2.SearchMessagesRequest(query=query, page_size=20),
                        metadata=metadata,
                    )
                    timings[kind].append(time.perf_counter() - started)
    return timings


async def main(messages: int, rounds: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    async with fresh_database(server_url(), prefix="atomchat_bench") as url:
        started = time.perf_counter()
        _, member_id, moderator_id = await fill(url, messages, rng)
        filled_in = time.perf_counter() - started
        async with serve_atomchat(
            database_url=url,
            log_level="WARNING",
            ATOMCHAT_JWT_SECRET=JWT_SECRET,
            ATOMCHAT_TOKEN_MINUTES=str(TOKEN_MINUTES),
        ) as server:
            report: dict[str, object] = {
                "messages": messages,
                "filled_seconds": round(filled_in, 1),
            }
            for who, token in (
                ("member of 20 of 200 channels", token_for(member_id, Role.USER)),
                ("moderator (every channel)", token_for(moderator_id, Role.MODERATOR)),
            ):
                await measure(server.grpc_port, token, 1)  # warm the caches
                timings = await measure(server.grpc_port, token, rounds)
                every = [t for samples in timings.values() for t in samples]
                report[who] = {
                    "overall": summary(every),
                    **{kind: summary(samples) for kind, samples in timings.items()},
                }
    return report


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    options = parser.parse_args()
    report = asyncio.run(main(options.messages, options.rounds, options.seed))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"search-{options.messages}.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    cli()
