"""Who may do what: the only place that knows.

Every rule is a plain function of the caller and their standing in a channel
(`Standing`, loaded by the caller of these functions). `ensure_*` functions
return or raise the DomainError the client will see; predicates answer for
places that decide many at once (a batch of posts, the streams of a channel).
Every part of the service that needs a rule calls it here: the unary calls,
the poster's batches, and the router that ends streams.
"""

from __future__ import annotations

from dataclasses import dataclass

from atomchat_server.domain import errors
from atomchat_server.domain.entities import Actor, JoinRequestView


@dataclass(frozen=True, slots=True)
class Standing:
    """The caller's relation to one channel."""

    is_member: bool
    is_owner: bool


OUTSIDER = Standing(is_member=False, is_owner=False)


def ensure_moderator(actor: Actor) -> None:
    """Blocking and unblocking users."""
    if not actor.is_moderator:
        raise errors.not_enough_permissions(errors.Reason.MODERATOR_REQUIRED)


def can_look_up(actor: Actor, *, is_active: bool) -> bool:
    """Finding a user by name: active users by anyone, blocked ones by moderators
    only (to others a blocked user is as unknown as to AddMember)."""
    return is_active or actor.is_moderator


def ensure_can_manage_channel(actor: Actor, standing: Standing) -> None:
    """Changing or deleting a channel, deciding join requests, adding and removing members."""
    if not (standing.is_owner or actor.is_moderator):
        raise errors.not_enough_permissions(errors.Reason.CHANNEL_OWNER_REQUIRED)


def can_take_part(*, is_member: bool, is_moderator: bool) -> bool:
    """Reading, posting, streaming and listing members of a channel: members and moderators.

    A stream whose user stops being a member (removed, or left) ends unless
    this still holds without membership: moderators keep theirs.
    """
    return is_member or is_moderator


def ensure_can_read_channel(actor: Actor, standing: Standing) -> None:
    """Chatting, reading history and listing members: members and moderators."""
    if not can_take_part(is_member=standing.is_member, is_moderator=actor.is_moderator):
        raise errors.not_a_member()


def ensure_can_edit(actor: Actor, *, sender_id: int, standing: Standing) -> None:
    """Editing a message: its author, while still allowed to post in the channel."""
    if actor.user_id != sender_id:
        raise errors.PermissionDenied(
            "Only the author can edit a message", reason=errors.Reason.NOT_THE_AUTHOR
        )
    ensure_can_read_channel(actor, standing)


def ensure_can_delete(actor: Actor, *, sender_id: int, standing: Standing) -> None:
    """Deleting a message: its author while they take part, the channel's owner, a moderator."""
    if standing.is_owner or actor.is_moderator:
        return
    if actor.user_id != sender_id:
        raise errors.PermissionDenied(
            "Only the author, the channel owner or a moderator can delete a message",
            reason=errors.Reason.NOT_THE_AUTHOR,
        )
    ensure_can_read_channel(actor, standing)


def can_see_join_request(actor: Actor, request: JoinRequestView, standing: Standing) -> bool:
    """The requester, the channel's owner and moderators."""
    return actor.user_id == request.user_id or standing.is_owner or actor.is_moderator


def ensure_can_be_removed(target: Standing) -> None:
    if target.is_owner:
        raise errors.FailedPrecondition(
            "You cannot remove the channel owner", reason=errors.Reason.CANNOT_REMOVE_OWNER
        )


def ensure_can_leave(standing: Standing) -> None:
    """Members other than the owner; for anyone else it is not a member's call."""
    if not standing.is_member:
        raise errors.not_a_member()
    if standing.is_owner:
        raise errors.FailedPrecondition(
            "The channel owner cannot leave the channel", reason=errors.Reason.OWNER_CANNOT_LEAVE
        )


def ensure_not_self(actor: Actor, user_id: int) -> None:
    """A moderator may not block themselves out of the service."""
    if actor.user_id == user_id:
        raise errors.FailedPrecondition(
            "You cannot block yourself", reason=errors.Reason.CANNOT_BLOCK_SELF
        )
