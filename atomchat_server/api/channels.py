"""ChannelService: create, list, look up, update and delete channels; read markers."""

from __future__ import annotations

from atomchat.v1 import channels_pb2, channels_pb2_grpc, resources_pb2
from google.protobuf import empty_pb2

from atomchat_server.api import convert
from atomchat_server.auth.interceptor import current_actor
from atomchat_server.db.engine import Database
from atomchat_server.domain import channels, reading
from atomchat_server.interception import Context
from atomchat_server.limits import Limits
from atomchat_server.realtime.presence import Presence


class ChannelServicer(channels_pb2_grpc.ChannelServiceServicer):
    def __init__(self, database: Database, limits: Limits, presence: Presence) -> None:
        self._db = database
        self._limits = limits
        self._presence = presence

    async def CreateChannel(
        self, request: channels_pb2.CreateChannelRequest, context: Context
    ) -> resources_pb2.Channel:
        actor = current_actor()
        self._limits.check_channel_creation(actor.user_id)
        async with self._db.transaction() as session:
            channel = await channels.create_channel(
                session, actor=actor, name=request.name, description=request.description
            )
        return convert.channel(channel)

    async def ListChannels(
        self, request: channels_pb2.ListChannelsRequest, context: Context
    ) -> channels_pb2.ListChannelsResponse:
        async with self._db.transaction() as session:
            page = await channels.list_channels(
                session, page_size=request.page_size, page_token=request.page_token
            )
        return channels_pb2.ListChannelsResponse(
            channels=[convert.channel(c) for c in page.items], next_page_token=page.next_page_token
        )

    async def ListMyChannels(
        self, request: channels_pb2.ListMyChannelsRequest, context: Context
    ) -> channels_pb2.ListMyChannelsResponse:
        async with self._db.transaction() as session:
            page = await reading.list_my_channels(
                session,
                actor=current_actor(),
                page_size=request.page_size,
                page_token=request.page_token,
            )
        return channels_pb2.ListMyChannelsResponse(
            channels=[convert.channel(c) for c in page.items], next_page_token=page.next_page_token
        )

    async def GetChannel(
        self, request: channels_pb2.GetChannelRequest, context: Context
    ) -> channels_pb2.ChannelDetail:
        async with self._db.transaction() as session:
            detail = await channels.get_channel_detail(
                session, actor=current_actor(), slug=request.slug
            )
        channel_id = detail.channel.id
        return channels_pb2.ChannelDetail(
            channel=convert.channel(detail.channel),
            owner=convert.user(detail.owner),
            members=[
                convert.member(m, online=self._presence.is_online(channel_id, m.user_id))
                for m in detail.members
            ],
        )

    async def UpdateChannel(
        self, request: channels_pb2.UpdateChannelRequest, context: Context
    ) -> resources_pb2.Channel:
        async with self._db.transaction() as session:
            channel = await channels.update_channel(
                session,
                actor=current_actor(),
                channel_id=request.channel_id,
                name=request.name if request.HasField("name") else None,
                description=request.description if request.HasField("description") else None,
                update_mask=list(request.update_mask.paths),
            )
        return convert.channel(channel)

    async def MarkRead(
        self, request: channels_pb2.MarkReadRequest, context: Context
    ) -> resources_pb2.ReadState:
        async with self._db.transaction() as session:
            state = await reading.mark_read(
                session, actor=current_actor(), channel_id=request.channel_id, seq=request.seq
            )
        return convert.read_state(state)

    async def DeleteChannel(
        self, request: channels_pb2.DeleteChannelRequest, context: Context
    ) -> empty_pb2.Empty:
        async with self._db.transaction() as session:
            await channels.delete_channel(
                session, actor=current_actor(), channel_id=request.channel_id
            )
        return empty_pb2.Empty()
