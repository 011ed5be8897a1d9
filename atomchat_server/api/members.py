"""MemberService: add, remove and list members; leave a channel."""

from __future__ import annotations

from atomchat.v1 import members_pb2, members_pb2_grpc, resources_pb2
from google.protobuf import empty_pb2

from atomchat_server.api import convert
from atomchat_server.auth.interceptor import current_actor
from atomchat_server.db.engine import Database
from atomchat_server.domain import members
from atomchat_server.interception import Context
from atomchat_server.realtime.presence import Presence


class MemberServicer(members_pb2_grpc.MemberServiceServicer):
    def __init__(self, database: Database, presence: Presence) -> None:
        self._db = database
        self._presence = presence

    async def AddMember(
        self, request: members_pb2.AddMemberRequest, context: Context
    ) -> resources_pb2.Member:
        async with self._db.transaction() as session:
            member = await members.add_member(
                session,
                actor=current_actor(),
                channel_id=request.channel_id,
                user_id=request.user_id,
            )
        return convert.member(
            member, online=self._presence.is_online(request.channel_id, member.user_id)
        )

    async def RemoveMember(
        self, request: members_pb2.RemoveMemberRequest, context: Context
    ) -> empty_pb2.Empty:
        async with self._db.transaction() as session:
            await members.remove_member(
                session,
                actor=current_actor(),
                channel_id=request.channel_id,
                user_id=request.user_id,
            )
        return empty_pb2.Empty()

    async def ListMembers(
        self, request: members_pb2.ListMembersRequest, context: Context
    ) -> members_pb2.ListMembersResponse:
        async with self._db.transaction() as session:
            page = await members.list_members(
                session,
                actor=current_actor(),
                channel_id=request.channel_id,
                page_size=request.page_size,
                page_token=request.page_token,
            )
        online = self._presence.is_online
        return members_pb2.ListMembersResponse(
            members=[
                convert.member(m, online=online(request.channel_id, m.user_id)) for m in page.items
            ],
            next_page_token=page.next_page_token,
        )

    async def LeaveChannel(
        self, request: members_pb2.LeaveChannelRequest, context: Context
    ) -> empty_pb2.Empty:
        async with self._db.transaction() as session:
            await members.leave_channel(
                session, actor=current_actor(), channel_id=request.channel_id
            )
        return empty_pb2.Empty()
