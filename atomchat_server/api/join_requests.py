"""JoinRequestService: ask to join, see, list, accept and decline requests."""

from __future__ import annotations

from atomchat.v1 import join_requests_pb2, join_requests_pb2_grpc, resources_pb2

from atomchat_server.api import convert
from atomchat_server.auth.interceptor import current_actor
from atomchat_server.db.engine import Database
from atomchat_server.domain import join_requests
from atomchat_server.interception import Context


class JoinRequestServicer(join_requests_pb2_grpc.JoinRequestServiceServicer):
    def __init__(self, database: Database) -> None:
        self._db = database

    async def CreateJoinRequest(
        self, request: join_requests_pb2.CreateJoinRequestRequest, context: Context
    ) -> resources_pb2.JoinRequest:
        async with self._db.transaction() as session:
            created = await join_requests.create_join_request(
                session, actor=current_actor(), channel_id=request.channel_id
            )
        return convert.join_request(created)

    async def GetJoinRequest(
        self, request: join_requests_pb2.GetJoinRequestRequest, context: Context
    ) -> resources_pb2.JoinRequest:
        async with self._db.transaction() as session:
            found = await join_requests.get_join_request(
                session, actor=current_actor(), request_id=request.request_id
            )
        return convert.join_request(found)

    async def ListJoinRequests(
        self, request: join_requests_pb2.ListJoinRequestsRequest, context: Context
    ) -> join_requests_pb2.ListJoinRequestsResponse:
        async with self._db.transaction() as session:
            page = await join_requests.list_join_requests(
                session,
                actor=current_actor(),
                channel_id=request.channel_id,
                status=convert.status_name(request.status),
                page_size=request.page_size,
                page_token=request.page_token,
            )
        return join_requests_pb2.ListJoinRequestsResponse(
            join_requests=[convert.join_request(r) for r in page.items],
            next_page_token=page.next_page_token,
        )

    async def ListMyJoinRequests(
        self, request: join_requests_pb2.ListMyJoinRequestsRequest, context: Context
    ) -> join_requests_pb2.ListMyJoinRequestsResponse:
        async with self._db.transaction() as session:
            page = await join_requests.list_my_join_requests(
                session,
                actor=current_actor(),
                status=convert.status_name(request.status),
                page_size=request.page_size,
                page_token=request.page_token,
            )
        return join_requests_pb2.ListMyJoinRequestsResponse(
            join_requests=[convert.join_request(r) for r in page.items],
            next_page_token=page.next_page_token,
        )

    async def AcceptJoinRequest(
        self, request: join_requests_pb2.AcceptJoinRequestRequest, context: Context
    ) -> resources_pb2.JoinRequest:
        async with self._db.transaction() as session:
            decided = await join_requests.accept_join_request(
                session, actor=current_actor(), request_id=request.request_id
            )
        return convert.join_request(decided)

    async def DeclineJoinRequest(
        self, request: join_requests_pb2.DeclineJoinRequestRequest, context: Context
    ) -> resources_pb2.JoinRequest:
        async with self._db.transaction() as session:
            decided = await join_requests.decline_join_request(
                session, actor=current_actor(), request_id=request.request_id
            )
        return convert.join_request(decided)
