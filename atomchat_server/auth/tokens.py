"""Access tokens: HS256 JWTs with sub, username, role, iat and exp."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from atomchat_server.domain import errors
from atomchat_server.domain.entities import UserView

ALGORITHM = "HS256"
# A user id as `sub` carries it: a positive PostgreSQL bigint, in plain digits.
_SUBJECT = re.compile(r"[1-9][0-9]{0,18}")
_MAX_USER_ID = 2**63 - 1
LIFETIME_LEEWAY_SECONDS = 1


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    user_id: int
    issued_at: float
    """Seconds since the epoch (JWT `iat`)."""


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int


class Tokens:
    def __init__(self, *, secret: str, lifetime: timedelta) -> None:
        self._secret = secret
        self._lifetime = lifetime

    def issue(self, user: UserView, *, now: datetime | None = None) -> IssuedToken:
        # NumericDate with milliseconds: a token issued just after an unblock is
        # told from one issued just before the block, within the same second.
        issued_at = round((now or datetime.now(UTC)).timestamp(), 3)
        claims = {
            "sub": str(user.id),
            "username": user.username,
            "role": user.role,
            "iat": issued_at,
            "exp": issued_at + self._lifetime.total_seconds(),
        }
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM)
        return IssuedToken(token=token, expires_in=int(self._lifetime.total_seconds()))

    def verify(self, token: str) -> VerifiedToken:
        """Who a valid token was issued to, and when; UNAUTHENTICATED for anything else.

        A token that claims to live longer than this server issues tokens for
        (exp - iat beyond the configured lifetime) is refused: it was not ours
        to begin with, or the lifetime has been shortened since.
        """
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.InvalidTokenError as exc:
            raise errors.invalid_credentials() from exc
        subject, issued_at, expires = claims["sub"], claims["iat"], claims["exp"]
        if not isinstance(subject, str) or not _SUBJECT.fullmatch(subject):
            raise errors.invalid_credentials()
        user_id = int(subject)
        if user_id > _MAX_USER_ID:
            raise errors.invalid_credentials()
        if expires - issued_at > self._lifetime.total_seconds() + LIFETIME_LEEWAY_SECONDS:
            raise errors.invalid_credentials()
        return VerifiedToken(user_id=user_id, issued_at=float(issued_at))
