"""What the domain hands out: plain, immutable views of the data."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Generic, TypeVar

from atomchat_server.domain.kinds import JoinRequestStatus, Role, UpdateKind

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Actor:
    """The authenticated caller, as the interceptor found them on this call."""

    user_id: int
    username: str
    role: Role

    @property
    def is_moderator(self) -> bool:
        return self.role == Role.MODERATOR

    def __reduce__(self) -> tuple[object, ...]:
        # Each write carries its actor to the poster's process (see MessageView's).
        return (Actor, (self.user_id, self.username, self.role))


@dataclass(frozen=True, slots=True)
class UserView:
    id: int
    username: str
    role: Role
    is_active: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ReadStateView:
    """How far a member has read a channel (SPEC §8)."""

    channel_id: int
    last_read_seq: int
    unread_count: int
    mention_count: int


@dataclass(frozen=True, slots=True)
class ChannelView:
    id: int
    name: str
    slug: str
    description: str
    is_active: bool
    member_count: int
    owner_id: int
    created_at: datetime
    last_seq: int = 0
    # The caller's reading of it, where the caller is a member and it was asked for.
    read_state: ReadStateView | None = None


@dataclass(frozen=True, slots=True)
class ActivityView:
    """Where a channel stands for one member: its last seq and their reading of it."""

    channel_id: int
    last_seq: int
    read_state: ReadStateView


@dataclass(frozen=True, slots=True)
class MemberView:
    user_id: int
    username: str
    is_owner: bool
    joined_at: datetime


@dataclass(frozen=True, slots=True)
class ChannelDetailView:
    channel: ChannelView
    owner: UserView
    members: tuple[MemberView, ...]


@dataclass(frozen=True, slots=True)
class JoinRequestView:
    id: int
    channel_id: int
    user_id: int
    status: JoinRequestStatus
    created_at: datetime
    decided_at: datetime | None
    decided_by: int | None
    # The requester's username.
    username: str


@dataclass(frozen=True, slots=True)
class ReactionView:
    """One emoji on a message, and who reacted with it, in the order they did."""

    emoji: str
    user_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class MessageView:
    """A message in its current state; `seq` is the seq it was posted with."""

    id: int
    channel_id: int
    seq: int
    sender_id: int
    sender_username: str
    content: str
    created_at: datetime
    client_message_id: str | None
    edited_at: datetime | None = None
    deleted_at: datetime | None = None
    deleted_by: int | None = None
    reply_to_id: int | None = None
    mention_user_ids: tuple[int, ...] = ()
    # In the order each emoji was first used.
    reactions: tuple[ReactionView, ...] = ()

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    def __reduce__(self) -> tuple[object, ...]:
        # Every post crosses from the poster's process: by its fields, in order,
        # it is pickled and unpickled in about half the time a frozen dataclass
        # takes by default (a Python loop over its fields each way).
        return (MessageView, tuple(getattr(self, name) for name in _MESSAGE_FIELDS))


_MESSAGE_FIELDS = tuple(field.name for field in fields(MessageView))


@dataclass(frozen=True, slots=True)
class UpdateView:
    """A change to a message that took the channel's `seq`; `message` is its state now."""

    seq: int
    kind: UpdateKind
    message: MessageView

    @property
    def channel_id(self) -> int:
        return self.message.channel_id


# What a channel's timeline is made of, each with its own seq.
TimelineEntry = MessageView | UpdateView


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    next_page_token: str
