"""Domain views to protobuf messages, and proto enums to domain values."""

from __future__ import annotations

from datetime import UTC, datetime

from atomchat.v1 import inbox_pb2
from atomchat.v1 import resources_pb2 as pb
from google.protobuf.timestamp_pb2 import Timestamp

from atomchat_server.domain import entities
from atomchat_server.domain.errors import InvalidArgument
from atomchat_server.domain.inbox import InboxEntry
from atomchat_server.domain.kinds import InboxKind, JoinRequestStatus, MembershipChange, Role

ROLES = {Role.USER: pb.ROLE_USER, Role.MODERATOR: pb.ROLE_MODERATOR}
STATUSES = {
    JoinRequestStatus.PENDING: pb.JOIN_REQUEST_STATUS_PENDING,
    JoinRequestStatus.ACCEPTED: pb.JOIN_REQUEST_STATUS_ACCEPTED,
    JoinRequestStatus.REJECTED: pb.JOIN_REQUEST_STATUS_REJECTED,
}
STATUS_NAMES: dict[int, JoinRequestStatus] = {number: name for name, number in STATUSES.items()}
MEMBERSHIP_CHANGES = {
    MembershipChange.ADDED: inbox_pb2.MEMBERSHIP_CHANGE_ADDED,
    MembershipChange.REMOVED: inbox_pb2.MEMBERSHIP_CHANGE_REMOVED,
    MembershipChange.CHANNEL_DELETED: inbox_pb2.MEMBERSHIP_CHANGE_CHANNEL_DELETED,
}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(moment: datetime | None) -> Timestamp | None:
    """The moment as a Timestamp (naive moments are UTC), in half the time of
    Timestamp.FromDatetime: every message and channel a server sends has one."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    since = moment - _EPOCH
    return Timestamp(seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1000)


def user(view: entities.UserView) -> pb.User:
    return pb.User(
        id=view.id,
        username=view.username,
        role=ROLES[view.role],
        is_active=view.is_active,
        created_at=timestamp(view.created_at),
    )


def channel(view: entities.ChannelView) -> pb.Channel:
    return pb.Channel(
        id=view.id,
        name=view.name,
        slug=view.slug,
        description=view.description,
        is_active=view.is_active,
        member_count=view.member_count,
        owner_id=view.owner_id,
        created_at=timestamp(view.created_at),
        last_seq=view.last_seq,
        read_state=read_state(view.read_state) if view.read_state is not None else None,
    )


def read_state(view: entities.ReadStateView) -> pb.ReadState:
    return pb.ReadState(
        channel_id=view.channel_id,
        last_read_seq=view.last_read_seq,
        unread_count=view.unread_count,
        mention_count=view.mention_count,
    )


def member(view: entities.MemberView, *, online: bool = False) -> pb.Member:
    return pb.Member(
        user_id=view.user_id,
        username=view.username,
        is_owner=view.is_owner,
        joined_at=timestamp(view.joined_at),
        online=online,
    )


def join_request(view: entities.JoinRequestView) -> pb.JoinRequest:
    return pb.JoinRequest(
        id=view.id,
        channel_id=view.channel_id,
        user_id=view.user_id,
        status=STATUSES[view.status],
        created_at=timestamp(view.created_at),
        decided_at=timestamp(view.decided_at),
        decided_by=view.decided_by or 0,
        username=view.username,
    )


def message(view: entities.MessageView, viewer: int | None = None) -> pb.Message:
    """The message as `viewer` sees it (`me` on their own reactions; None: nobody's)."""
    return pb.Message(
        id=view.id,
        channel_id=view.channel_id,
        seq=view.seq,
        sender_id=view.sender_id,
        sender_username=view.sender_username,
        content=view.content,
        created_at=timestamp(view.created_at),
        client_message_id=view.client_message_id or "",
        edited_at=timestamp(view.edited_at),
        deleted=view.deleted,
        deleted_by=view.deleted_by or 0,
        reply_to_id=view.reply_to_id or 0,
        reactions=[
            pb.ReactionCount(
                emoji=reaction.emoji,
                count=len(reaction.user_ids),
                me=viewer is not None and viewer in reaction.user_ids,
            )
            for reaction in view.reactions
        ],
        mention_user_ids=view.mention_user_ids,
    )


def activity(view: entities.ActivityView) -> inbox_pb2.InboxEvent:
    return inbox_pb2.InboxEvent(
        activity=inbox_pb2.ActivityNotice(
            channel_id=view.channel_id,
            last_seq=view.last_seq,
            read_state=read_state(view.read_state),
        )
    )


def inbox_event(entry: InboxEntry, viewer: int) -> inbox_pb2.InboxEvent:
    """A stored inbox event as it reads now."""
    event = inbox_pb2.InboxEvent(id=entry.id, created_at=timestamp(entry.created_at))
    about = channel(entry.channel)
    match entry.kind:
        case InboxKind.JOIN_REQUEST | InboxKind.JOIN_REQUEST_DECIDED if entry.join_request:
            notice = inbox_pb2.JoinRequestNotice(
                join_request=join_request(entry.join_request), channel=about
            )
            if entry.kind is InboxKind.JOIN_REQUEST:
                event.join_request.CopyFrom(notice)
            else:
                event.join_request_decided.CopyFrom(notice)
        case InboxKind.MEMBERSHIP if entry.change is not None:
            event.membership.CopyFrom(
                inbox_pb2.MembershipNotice(channel=about, change=MEMBERSHIP_CHANGES[entry.change])
            )
        case InboxKind.MENTION if entry.message is not None:
            event.mention.CopyFrom(
                inbox_pb2.MentionNotice(message=message(entry.message, viewer), channel=about)
            )
    return event


def status_name(status: int) -> JoinRequestStatus:
    """A JoinRequestStatus as the domain names it; UNSPECIFIED means pending."""
    if status == pb.JOIN_REQUEST_STATUS_UNSPECIFIED:
        return JoinRequestStatus.PENDING
    try:
        return STATUS_NAMES[status]
    except KeyError:
        raise InvalidArgument("Unknown join request status", field="status") from None
