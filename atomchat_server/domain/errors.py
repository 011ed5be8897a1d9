"""What can go wrong in the domain, with no knowledge of gRPC.

    DomainError                 message + stable reason (a Reason)
    ├── InvalidArgument         the request is malformed; carries field violations
    ├── Unauthenticated         no valid credentials
    ├── PermissionDenied        authenticated, but not allowed
    ├── NotFound                no such thing (or not visible to the caller)
    ├── AlreadyExists           it exists already
    ├── FailedPrecondition      not in a state that allows this
    ├── ResourceExhausted       a client fell too far behind, or went past a limit
    ├── OutOfRange              a position beyond the end (after_seq past the last seq)
    └── Unavailable             the service or its database cannot answer now; retry

api/status.py turns each into a gRPC status code with google.rpc details,
in one place; db/errors.py turns the database driver's failures into these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum, unique


@unique
class Reason(StrEnum):
    """Every stable reason a client may see in google.rpc.ErrorInfo, listed once."""

    AFTER_ID_BEYOND_LAST = "AFTER_ID_BEYOND_LAST"
    AFTER_SEQ_BEYOND_LAST = "AFTER_SEQ_BEYOND_LAST"
    ALREADY_JOINED = "ALREADY_JOINED"
    ALREADY_MEMBER = "ALREADY_MEMBER"
    BAD_REPLY_TARGET = "BAD_REPLY_TARGET"
    CANNOT_BLOCK_SELF = "CANNOT_BLOCK_SELF"
    CANNOT_REMOVE_OWNER = "CANNOT_REMOVE_OWNER"
    CHANNEL_NAME_TAKEN = "CHANNEL_NAME_TAKEN"
    CHANNEL_NOT_FOUND = "CHANNEL_NOT_FOUND"
    CHANNEL_OWNER_REQUIRED = "CHANNEL_OWNER_REQUIRED"
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
    EMPTY_UPDATE = "EMPTY_UPDATE"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    INVALID_CLIENT_MESSAGE_ID = "INVALID_CLIENT_MESSAGE_ID"
    INVALID_CONTENT = "INVALID_CONTENT"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    INVALID_CREDENTIALS_FORMAT = "INVALID_CREDENTIALS_FORMAT"
    INVALID_DESCRIPTION = "INVALID_DESCRIPTION"
    INVALID_EMOJI = "INVALID_EMOJI"
    INVALID_NAME = "INVALID_NAME"
    INVALID_PASSWORD = "INVALID_PASSWORD"
    INVALID_QUERY = "INVALID_QUERY"
    INVALID_TEXT = "INVALID_TEXT"
    INVALID_UPDATE_MASK = "INVALID_UPDATE_MASK"
    INVALID_USERNAME = "INVALID_USERNAME"
    JOIN_FIRST = "JOIN_FIRST"
    JOIN_REQUEST_NOT_FOUND = "JOIN_REQUEST_NOT_FOUND"
    JOIN_REQUEST_NOT_PENDING = "JOIN_REQUEST_NOT_PENDING"
    JOIN_REQUEST_PENDING = "JOIN_REQUEST_PENDING"
    MALFORMED_REQUEST = "MALFORMED_REQUEST"
    MEMBER_NOT_FOUND = "MEMBER_NOT_FOUND"
    MESSAGE_DELETED = "MESSAGE_DELETED"
    MESSAGE_NOT_FOUND = "MESSAGE_NOT_FOUND"
    MISSING_TOKEN = "MISSING_TOKEN"
    MODERATOR_REQUIRED = "MODERATOR_REQUIRED"
    NOT_A_MEMBER = "NOT_A_MEMBER"
    NOT_THE_AUTHOR = "NOT_THE_AUTHOR"
    OWNER_CANNOT_LEAVE = "OWNER_CANNOT_LEAVE"
    PASSWORD_QUEUE_FULL = "PASSWORD_QUEUE_FULL"
    RATE_LIMITED = "RATE_LIMITED"
    SERVER_BUSY = "SERVER_BUSY"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    SUBSCRIBER_TOO_SLOW = "SUBSCRIBER_TOO_SLOW"
    TOO_MANY_REACTIONS = "TOO_MANY_REACTIONS"
    USERNAME_TAKEN = "USERNAME_TAKEN"
    USER_BLOCKED = "USER_BLOCKED"
    USER_NOT_FOUND = "USER_NOT_FOUND"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str
    description: str


class DomainError(Exception):
    """An expected failure, answered to the client as it is.

    `retry_after` (seconds) says when trying again may succeed; `quota` names
    the limit that refused (google.rpc RetryInfo and QuotaFailure); `metadata`
    goes into ErrorInfo (e.g. the last seq a client may resume after).
    """

    def __init__(
        self,
        message: str,
        *,
        reason: Reason,
        retry_after: float | None = None,
        quota: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.retry_after = retry_after
        self.quota = quota
        self.metadata = dict(metadata or {})

    def __reduce__(self) -> tuple[object, ...]:
        # Crosses from the poster's process as it is: its attributes, not its arguments.
        return (_rebuilt, (type(self), self.message, self.__dict__.copy()))


def _rebuilt(kind: type[DomainError], message: str, state: dict[str, object]) -> DomainError:
    error = kind.__new__(kind)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class InvalidArgument(DomainError):
    def __init__(
        self, message: str, *, reason: Reason = Reason.INVALID_ARGUMENT, field: str | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.violations: tuple[FieldViolation, ...] = (
            (FieldViolation(field, message),) if field else ()
        )


class Unauthenticated(DomainError):
    pass


class PermissionDenied(DomainError):
    pass


class NotFound(DomainError):
    pass


class AlreadyExists(DomainError):
    pass


class FailedPrecondition(DomainError):
    pass


class ResourceExhausted(DomainError):
    pass


class OutOfRange(DomainError):
    pass


class Unavailable(DomainError):
    pass


INVALID_CREDENTIALS = "Invalid authentication credentials"
NOT_A_MEMBER = "You are not a member of this channel."


def invalid_credentials() -> Unauthenticated:
    return Unauthenticated(INVALID_CREDENTIALS, reason=Reason.INVALID_CREDENTIALS)


def user_blocked() -> Unauthenticated:
    return Unauthenticated("User is blocked", reason=Reason.USER_BLOCKED)


def channel_not_found() -> NotFound:
    return NotFound("Channel not found", reason=Reason.CHANNEL_NOT_FOUND)


def message_not_found() -> NotFound:
    return NotFound("Message not found", reason=Reason.MESSAGE_NOT_FOUND)


def user_not_found() -> NotFound:
    return NotFound("User not found", reason=Reason.USER_NOT_FOUND)


def join_request_not_found() -> NotFound:
    return NotFound("Join request not found", reason=Reason.JOIN_REQUEST_NOT_FOUND)


def not_a_member() -> PermissionDenied:
    return PermissionDenied(NOT_A_MEMBER, reason=Reason.NOT_A_MEMBER)


def not_enough_permissions(reason: Reason) -> PermissionDenied:
    return PermissionDenied("Not enough permissions", reason=reason)


def already_member() -> AlreadyExists:
    return AlreadyExists("User is already a member of this channel", reason=Reason.ALREADY_MEMBER)


def database_unavailable() -> Unavailable:
    return Unavailable("Database unavailable, try again", reason=Reason.DATABASE_UNAVAILABLE)


def server_busy() -> Unavailable:
    """More streams are opening than this process takes on now."""
    return Unavailable("Server is busy, try again", reason=Reason.SERVER_BUSY)


def shutting_down() -> Unavailable:
    return Unavailable("Server is shutting down", reason=Reason.SHUTTING_DOWN)


def unstorable_text() -> InvalidArgument:
    """Text PostgreSQL cannot store (a NUL character) that got past validation."""
    return InvalidArgument("Text must not contain NUL characters", reason=Reason.INVALID_TEXT)
