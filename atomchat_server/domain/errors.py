"""What can go wrong in the domain, with no knowledge of gRPC.

    DomainError                 message + stable reason (e.g. CHANNEL_NOT_FOUND)
    ├── InvalidArgument         the request is malformed; carries field violations
    ├── Unauthenticated         no valid credentials
    ├── PermissionDenied        authenticated, but not allowed
    ├── NotFound                no such thing (or not visible to the caller)
    ├── AlreadyExists           it exists already
    ├── FailedPrecondition      not in a state that allows this
    ├── ResourceExhausted       a client fell too far behind
    └── Unavailable             the service is going away; retry elsewhere

api/status.py turns each into a gRPC status code with google.rpc details,
in one place.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str
    description: str


class DomainError(Exception):
    """An expected failure, answered to the client as it is."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


class InvalidArgument(DomainError):
    def __init__(
        self, message: str, *, reason: str = "INVALID_ARGUMENT", field: str | None = None
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


class Unavailable(DomainError):
    pass


INVALID_CREDENTIALS = "Invalid authentication credentials"
NOT_A_MEMBER = "You are not a member of this channel."


def invalid_credentials() -> Unauthenticated:
    return Unauthenticated(INVALID_CREDENTIALS, reason="INVALID_CREDENTIALS")


def channel_not_found() -> NotFound:
    return NotFound("Channel not found", reason="CHANNEL_NOT_FOUND")


def user_not_found() -> NotFound:
    return NotFound("User not found", reason="USER_NOT_FOUND")


def join_request_not_found() -> NotFound:
    return NotFound("Join request not found", reason="JOIN_REQUEST_NOT_FOUND")


def not_a_member() -> PermissionDenied:
    return PermissionDenied(NOT_A_MEMBER, reason="NOT_A_MEMBER")


def not_enough_permissions(reason: str) -> PermissionDenied:
    return PermissionDenied("Not enough permissions", reason=reason)
