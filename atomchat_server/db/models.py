"""The schema (SPEC §2). Every rule the data must keep is a database constraint."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from atomchat_server.domain.kinds import (
    InboxKind,
    JoinRequestStatus,
    MembershipChange,
    Role,
    UpdateKind,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _one_of(column: str, kind: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(member.value) for member in kind)})"


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("username"),
        # Confusable names share a key (domain/usernames.py): one of them per key.
        UniqueConstraint("username_key"),
        CheckConstraint(_one_of("role", Role), name="role"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    username: Mapped[str] = mapped_column(String(32), nullable=False)
    username_key: Mapped[str] = mapped_column(Text, nullable=False)
    hashed_password: Mapped[str] = mapped_column(String(255), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False, server_default=Role.USER.value)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    created_at: Mapped[datetime] = _now()
    # Set when the user is blocked: tokens issued before it never work again.
    tokens_valid_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The id of the user's latest inbox event (their inbox ids are gap-free).
    inbox_last_id: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")


class Channel(Base):
    __tablename__ = "channels"
    __table_args__ = (
        # Names and slugs are unique among the channels that exist; a deleted
        # channel keeps its row and data but frees its name.
        Index("uq_channels_name_active", "name", unique=True, postgresql_where=text("is_active")),
        Index("uq_channels_slug_active", "slug", unique=True, postgresql_where=text("is_active")),
        CheckConstraint("member_count >= 0", name="member_count_not_negative"),
        CheckConstraint("last_seq >= 0", name="last_seq_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    slug: Mapped[str] = mapped_column(String(120), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    member_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    created_at: Mapped[datetime] = _now()
    last_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")


class ChannelJoinRequest(Base):
    __tablename__ = "channel_join_requests"
    __table_args__ = (
        Index(
            "uq_channel_join_requests_pending",
            "channel_id",
            "user_id",
            unique=True,
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_channel_join_requests_channel_status", "channel_id", "status", "id"),
        Index("ix_channel_join_requests_user_status", "user_id", "status", "id"),
        CheckConstraint(_one_of("status", JoinRequestStatus), name="status"),
        CheckConstraint(
            "(status = 'pending') = (decided_at IS NULL)", name="decided_iff_not_pending"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"), nullable=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)
    status: Mapped[str] = mapped_column(
        String(16), nullable=False, server_default=JoinRequestStatus.PENDING.value
    )
    created_at: Mapped[datetime] = _now()
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class ChannelMember(Base):
    __tablename__ = "channel_members"
    __table_args__ = (
        UniqueConstraint("channel_id", "user_id"),
        Index(
            "uq_channel_members_one_owner",
            "channel_id",
            unique=True,
            postgresql_where=text("is_owner"),
        ),
        Index("ix_channel_members_user_id", "user_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"), nullable=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)
    is_owner: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    joined_at: Mapped[datetime] = _now()
    # Everything up to this seq counts as read (set to the channel's last seq on joining).
    last_read_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")


class Message(Base):
    """A message in its current state; its seq is the seq it was posted with."""

    __tablename__ = "messages"
    __table_args__ = (
        # With what unread counts read (domain/channel_rows.py), so that counting a
        # member's unread messages reads this index only; mention counts read the
        # messages that mention anyone, from an index of their own.
        UniqueConstraint("channel_id", "seq", postgresql_include=["sender_id", "deleted_at"]),
        Index(
            "ix_messages_mentions",
            "channel_id",
            "seq",
            postgresql_include=["sender_id", "deleted_at", "mention_user_ids"],
            postgresql_where=text("mention_user_ids <> '{}'"),
        ),
        Index(
            "uq_messages_client_message_id",
            "channel_id",
            "sender_id",
            "client_message_id",
            unique=True,
            postgresql_where=text("client_message_id IS NOT NULL"),
        ),
        Index("ix_messages_search", "search", postgresql_using="gin"),
        # Adjacent words, for phrases (migration 0007 defines the function).
        Index(
            "ix_messages_search_pairs",
            text("search_word_pairs(search)"),
            postgresql_using="gin",
        ),
        CheckConstraint("seq > 0", name="seq_positive"),
        # A tombstone keeps no content; a message has 1-4000 characters.
        CheckConstraint(
            "(deleted_at IS NULL AND char_length(content) BETWEEN 1 AND 4000)"
            " OR (deleted_at IS NOT NULL AND content = '')",
            name="content",
        ),
        CheckConstraint("(deleted_at IS NULL) = (deleted_by IS NULL)", name="deleted_by_whom"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"), nullable=False)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sender_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _now()
    client_message_id: Mapped[str | None] = mapped_column(String(128))
    edited_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deleted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reply_to_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    mention_user_ids: Mapped[list[int]] = mapped_column(
        ARRAY(BigInteger), nullable=False, server_default="{}"
    )
    # Full-text search: PostgreSQL's `russian` configuration stems Cyrillic
    # words with the Russian Snowball stemmer and Latin ones with the English
    # one. Computed by PostgreSQL in the same statement as the content.
    search: Mapped[str] = mapped_column(
        TSVECTOR, Computed("to_tsvector('russian'::regconfig, content)", persisted=True)
    )


class MessageUpdate(Base):
    """A change to a message that took the channel's next seq (the timeline's
    other entries are the messages themselves, by the seq they were posted with)."""

    __tablename__ = "message_updates"
    __table_args__ = (CheckConstraint(_one_of("kind", UpdateKind), name="kind"),)

    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id"), primary_key=True, autoincrement=False
    )
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), nullable=False)
    created_at: Mapped[datetime] = _now()


class MessageReaction(Base):
    __tablename__ = "message_reactions"

    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), primary_key=True)
    emoji: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    created_at: Mapped[datetime] = _now()


class InboxEvent(Base):
    """A stored event of a user's inbox: what it is about, by id (its notice is
    built from the current rows when it is read)."""

    __tablename__ = "inbox_events"
    __table_args__ = (
        CheckConstraint(_one_of("kind", InboxKind), name="kind"),
        CheckConstraint(f"change IS NULL OR {_one_of('change', MembershipChange)}", name="change"),
    )

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(24), nullable=False)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"), nullable=False)
    join_request_id: Mapped[int | None] = mapped_column(ForeignKey("channel_join_requests.id"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    change: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = _now()
