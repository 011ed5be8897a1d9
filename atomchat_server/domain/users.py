"""Registering, logging in, profiles, blocking."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from atomchat_server.db.models import User
from atomchat_server.domain import errors, events, policy, usernames
from atomchat_server.domain.entities import Actor, UserView
from atomchat_server.domain.kinds import Role

PASSWORD_MIN, PASSWORD_MAX = 4, 128

PasswordVerifier = Callable[[str, str | None], Awaitable[bool]]


def user_view(row: User) -> UserView:
    return UserView(
        id=row.id,
        username=row.username,
        role=Role(row.role),
        is_active=row.is_active,
        created_at=row.created_at,
    )


def validate_credentials(username: str, password: str) -> None:
    usernames.validate_username(username)
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise errors.InvalidArgument(
            "Password must be 4-128 characters",
            reason=errors.Reason.INVALID_PASSWORD,
            field="password",
        )


def validate_login(username: str, password: str) -> None:
    """What no account can match is refused before any lookup or hashing."""
    if len(password) > PASSWORD_MAX or len(username) > usernames.USERNAME_MAX:
        raise errors.InvalidArgument(
            f"Username must be at most {usernames.USERNAME_MAX} characters"
            f" and password at most {PASSWORD_MAX}",
            reason=errors.Reason.INVALID_CREDENTIALS_FORMAT,
        )


async def ensure_can_register(session: AsyncSession, *, username: str, password: str) -> None:
    """Refuse bad or taken credentials before anyone spends time hashing the password."""
    validate_credentials(username, password)
    taken = select(User.id).where(User.username_key == usernames.username_key(username))
    if await session.scalar(taken) is not None:
        raise _username_taken()


async def create_user(session: AsyncSession, *, username: str, hashed_password: str) -> UserView:
    """Insert a registered user; a concurrent registration of the same name loses."""
    row = await session.scalar(
        insert(User)
        .values(
            username=username,
            username_key=usernames.username_key(username),
            hashed_password=hashed_password,
        )
        .on_conflict_do_nothing()
        .returning(User)
    )
    if row is None:
        raise _username_taken()
    return user_view(row)


def _username_taken() -> errors.AlreadyExists:
    return errors.AlreadyExists("Username already exists", reason=errors.Reason.USERNAME_TAKEN)


@dataclass(frozen=True, slots=True)
class LoginCandidate:
    user: UserView
    hashed_password: str


async def find_login_candidate(session: AsyncSession, *, username: str) -> LoginCandidate | None:
    """The user a login names, if any; `authenticate` then checks the password."""
    if "\x00" in username:  # no username has one, and PostgreSQL text cannot hold it
        return None
    row = await session.scalar(select(User).where(User.username == username))
    return None if row is None else LoginCandidate(user_view(row), row.hashed_password)


async def authenticate(
    candidate: LoginCandidate | None, *, password: str, verify_password: PasswordVerifier
) -> UserView:
    """The user, if the password is right and the user is not blocked.

    Runs outside any transaction: verifying is slow on purpose. Unknown users
    still cost one verification, so timing does not tell which names exist.
    """
    stored = candidate.hashed_password if candidate is not None else None
    matches = await verify_password(password, stored)
    if candidate is None or not matches or not candidate.user.is_active:
        raise errors.invalid_credentials()
    return candidate.user


@dataclass(frozen=True, slots=True)
class ActiveUser:
    """A token's user as the authenticator needs them: who, and which tokens count."""

    actor: Actor
    tokens_valid_after: datetime | None

    def accepts_token_issued_at(self, issued_at: float) -> bool:
        """Tokens issued up to the moment the user was last blocked never work again."""
        cutoff = self.tokens_valid_after
        return cutoff is None or issued_at > cutoff.timestamp()


async def find_active_user(session: AsyncSession, *, user_id: int) -> ActiveUser | None:
    """The user a token names, if they exist and are not blocked."""
    row = (
        await session.execute(
            select(User.username, User.role, User.tokens_valid_after).where(
                User.id == user_id, User.is_active
            )
        )
    ).first()
    if row is None:
        return None
    actor = Actor(user_id=user_id, username=row.username, role=Role(row.role))
    return ActiveUser(actor=actor, tokens_valid_after=row.tokens_valid_after)


async def get_user(session: AsyncSession, *, user_id: int) -> UserView:
    row = await session.get(User, user_id)
    if row is None:
        raise errors.user_not_found()
    return user_view(row)


async def lookup_user(session: AsyncSession, *, actor: Actor, username: str) -> UserView:
    """The user a name stands for, matched as logins and mentions are (case and
    lookalikes folded): NOT_FOUND if unknown, or blocked and the caller no moderator."""
    if not username:
        raise errors.InvalidArgument(
            "Username is required", reason=errors.Reason.INVALID_USERNAME, field="username"
        )
    # What no username can be (longer, or a NUL PostgreSQL text cannot hold)
    # names no one: refused before the key is worked out.
    if len(username) > usernames.USERNAME_MAX or "\x00" in username:
        raise errors.user_not_found()
    row = await session.scalar(
        select(User).where(User.username_key == usernames.username_key(username))
    )
    if row is None or not policy.can_look_up(actor, is_active=row.is_active):
        raise errors.user_not_found()
    return user_view(row)


async def set_active(
    session: AsyncSession, *, actor: Actor, user_id: int, active: bool
) -> UserView:
    """Block (active=False) or unblock a user. Moderators only."""
    policy.ensure_moderator(actor)
    if not active:
        policy.ensure_not_self(actor, user_id)
    values: dict[str, object] = {"is_active": active}
    if not active:
        values["tokens_valid_after"] = func.now()
    row = await session.scalar(
        update(User).where(User.id == user_id).values(values).returning(User)
    )
    if row is None:
        raise errors.user_not_found()
    event = events.UserUnblocked(user_id) if active else events.UserBlocked(user_id)
    await events.emit(session, event)
    return user_view(row)
