"""The kinds of things the schema names in its text columns (db/models.py keeps
each to its members with a check constraint).

Kept apart from the models so that code that only speaks of them, the
poster's process above all, does not load SQLAlchemy.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    USER = "user"
    MODERATOR = "moderator"


class JoinRequestStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class UpdateKind(StrEnum):
    EDITED = "edited"
    DELETED = "deleted"
    REACTIONS = "reactions"


class InboxKind(StrEnum):
    JOIN_REQUEST = "join_request"
    JOIN_REQUEST_DECIDED = "join_request_decided"
    MEMBERSHIP = "membership"
    MENTION = "mention"


class MembershipChange(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANNEL_DELETED = "channel_deleted"
