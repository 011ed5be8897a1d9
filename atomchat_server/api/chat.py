"""ChatService: the bidirectional chat, its receive half (Subscribe), its send
half (SendMessage), changes to messages (edit, delete, reactions), history
pages (ListMessages), one message, search, and typing.

A stream counts toward its user's presence in the channel from the moment it
is live (after its access check) until it ends."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from atomchat.v1 import chat_pb2, resources_pb2
from google.protobuf import empty_pb2
from google.rpc import code_pb2

from atomchat_server.api import convert, status, wire
from atomchat_server.auth.interceptor import current_actor
from atomchat_server.db.engine import Database
from atomchat_server.domain import channels, errors, messages, search
from atomchat_server.domain.entities import Actor, ChannelView, MessageView
from atomchat_server.domain.posting import Change
from atomchat_server.interception import Context
from atomchat_server.limits import Limits
from atomchat_server.poster_process import MessagePoster
from atomchat_server.realtime.awareness import Awareness
from atomchat_server.realtime.delivery import Delivery, Encoded, Framing
from atomchat_server.realtime.hub import Hub, Subscriber

log = logging.getLogger(__name__)

SERVICE = "atomchat.v1.ChatService"
MAX_SENDS_IN_FLIGHT = 256
FRAMING = Framing(batch=wire.batch_frame, heartbeat=wire.heartbeat_frame)


@dataclass(slots=True)
class _OpenStream:
    subscriber: Subscriber[Encoded]
    username: str
    channel: ChannelView
    start_after: int
    last_seq: int
    history: list[MessageView]

    def take_history(self) -> list[MessageView]:
        """The history, handed over once: an open stream keeps none of it."""
        history, self.history = self.history, []
        return history


def _unary(method: Callable[..., Any], request: type[Any], response: type[Any]) -> Any:
    return grpc.unary_unary_rpc_method_handler(
        method,
        request_deserializer=request.FromString,
        response_serializer=response.SerializeToString,
    )


class ChatServicer:
    def __init__(
        self,
        database: Database,
        hub: Hub[Encoded],
        poster: MessagePoster,
        limits: Limits,
        awareness: Awareness,
    ) -> None:
        self._db = database
        self._hub = hub
        self._poster = poster
        self._limits = limits
        self._awareness = awareness

    def handler(self) -> grpc.GenericRpcHandler:
        """The service's handlers; stream frames are bytes encoded by `wire`."""
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "ChatStream": grpc.stream_stream_rpc_method_handler(
                    self.ChatStream,
                    request_deserializer=chat_pb2.ChatStreamRequest.FromString,
                    response_serializer=wire.passthrough,
                ),
                "Subscribe": grpc.unary_stream_rpc_method_handler(
                    self.Subscribe,
                    request_deserializer=chat_pb2.SubscribeRequest.FromString,
                    response_serializer=wire.passthrough,
                ),
                "SendMessage": _unary(
                    self.SendMessage, chat_pb2.SendMessageRequest, resources_pb2.Message
                ),
                "ListMessages": _unary(
                    self.ListMessages, chat_pb2.ListMessagesRequest, chat_pb2.ListMessagesResponse
                ),
                "GetMessage": _unary(
                    self.GetMessage, chat_pb2.GetMessageRequest, resources_pb2.Message
                ),
                "EditMessage": _unary(
                    self.EditMessage, chat_pb2.EditMessageRequest, resources_pb2.Message
                ),
                "DeleteMessage": _unary(
                    self.DeleteMessage, chat_pb2.DeleteMessageRequest, resources_pb2.Message
                ),
                "AddReaction": _unary(
                    self.AddReaction, chat_pb2.AddReactionRequest, resources_pb2.Message
                ),
                "RemoveReaction": _unary(
                    self.RemoveReaction, chat_pb2.RemoveReactionRequest, resources_pb2.Message
                ),
                "SearchMessages": _unary(
                    self.SearchMessages,
                    chat_pb2.SearchMessagesRequest,
                    chat_pb2.SearchMessagesResponse,
                ),
                "SetTyping": _unary(self.SetTyping, chat_pb2.SetTypingRequest, empty_pb2.Empty),
            },
        )

    async def ChatStream(
        self, requests: AsyncIterator[chat_pb2.ChatStreamRequest], context: Context
    ) -> None:
        actor = current_actor()
        try:
            first = await anext(requests)
        except StopAsyncIteration:
            first = chat_pb2.ChatStreamRequest()
        if not first.HasField("join"):
            raise errors.InvalidArgument(
                "The first frame must be join", reason=errors.Reason.JOIN_FIRST, field="join"
            )
        join = first.join
        stream = await self._open(
            actor,
            join.channel_id,
            after_seq=join.after_seq if join.HasField("after_seq") else None,
            history_limit=join.history_limit if join.HasField("history_limit") else None,
            max_batch=join.max_batch,
        )
        reader = asyncio.create_task(self._read_sends(requests, actor, stream))
        reader.add_done_callback(functools.partial(_end_on_failure, stream.subscriber))
        try:
            await self._deliver(stream, context, max_batch=join.max_batch)
        finally:
            # The reader's own failure, if any, has ended the stream already.
            reader.cancel()
            await asyncio.wait({reader})

    async def Subscribe(self, request: chat_pb2.SubscribeRequest, context: Context) -> None:
        stream = await self._open(
            current_actor(),
            request.channel_id,
            after_seq=request.after_seq if request.HasField("after_seq") else None,
            history_limit=request.history_limit if request.HasField("history_limit") else None,
            max_batch=request.max_batch,
        )
        await self._deliver(stream, context, max_batch=request.max_batch)

    async def SendMessage(
        self, request: chat_pb2.SendMessageRequest, context: Context
    ) -> resources_pb2.Message:
        actor = current_actor()
        self._limits.check_message(actor.user_id, request.channel_id)
        message = await self._poster.submit(
            actor=actor,
            channel_id=request.channel_id,
            content=request.content,
            client_message_id=request.client_message_id,
            reply_to_id=request.reply_to_id,
        )
        return convert.message(message, actor.user_id)

    async def ListMessages(
        self, request: chat_pb2.ListMessagesRequest, context: Context
    ) -> chat_pb2.ListMessagesResponse:
        actor = current_actor()
        async with self._db.transaction() as session:
            page = await messages.list_messages(
                session,
                actor=actor,
                channel_id=request.channel_id,
                page_size=request.page_size,
                page_token=request.page_token,
            )
        return chat_pb2.ListMessagesResponse(
            messages=[convert.message(m, actor.user_id) for m in page.items],
            next_page_token=page.next_page_token,
        )

    async def GetMessage(
        self, request: chat_pb2.GetMessageRequest, context: Context
    ) -> resources_pb2.Message:
        actor = current_actor()
        async with self._db.transaction() as session:
            message = await messages.get_message(
                session, actor=actor, channel_id=request.channel_id, message_id=request.message_id
            )
        return convert.message(message, actor.user_id)

    async def EditMessage(
        self, request: chat_pb2.EditMessageRequest, context: Context
    ) -> resources_pb2.Message:
        return await self._change(request, Change.EDIT, request.content)

    async def DeleteMessage(
        self, request: chat_pb2.DeleteMessageRequest, context: Context
    ) -> resources_pb2.Message:
        return await self._change(request, Change.DELETE)

    async def AddReaction(
        self, request: chat_pb2.AddReactionRequest, context: Context
    ) -> resources_pb2.Message:
        return await self._change(request, Change.REACT, request.emoji)

    async def RemoveReaction(
        self, request: chat_pb2.RemoveReactionRequest, context: Context
    ) -> resources_pb2.Message:
        return await self._change(request, Change.UNREACT, request.emoji)

    async def _change(self, request: Any, change: Change, value: str = "") -> resources_pb2.Message:
        actor = current_actor()
        message = await self._poster.change(
            actor=actor,
            channel_id=request.channel_id,
            message_id=request.message_id,
            change=change,
            value=value,
        )
        return convert.message(message, actor.user_id)

    async def SearchMessages(
        self, request: chat_pb2.SearchMessagesRequest, context: Context
    ) -> chat_pb2.SearchMessagesResponse:
        actor = current_actor()
        async with self._db.transaction() as session:
            page = await search.search_messages(
                session,
                actor=actor,
                query=request.query,
                channel_id=request.channel_id or None,
                page_size=request.page_size,
                page_token=request.page_token,
            )
        return chat_pb2.SearchMessagesResponse(
            results=[
                chat_pb2.SearchResult(
                    message=convert.message(found.message, actor.user_id), snippet=found.snippet
                )
                for found in page.items
            ],
            next_page_token=page.next_page_token,
        )

    async def SetTyping(
        self, request: chat_pb2.SetTypingRequest, context: Context
    ) -> empty_pb2.Empty:
        actor = current_actor()
        async with self._db.transaction() as session:
            await channels.open_for_reading(session, actor=actor, channel_id=request.channel_id)
        self._awareness.typing(request.channel_id, actor.user_id, actor.username)
        return empty_pb2.Empty()

    async def _open(
        self,
        actor: Actor,
        channel_id: int,
        *,
        after_seq: int | None,
        history_limit: int | None,
        max_batch: int,
    ) -> _OpenStream:
        # Subscribe before checking access and reading the last seq: whatever
        # is committed from here on reaches the buffer, and a removal or a
        # deletion that lands meanwhile closes the subscriber.
        self._limits.open_stream(actor.user_id)
        subscriber = self._hub.subscribe(
            channel_id, actor.user_id, is_moderator=actor.is_moderator, batches=max_batch > 1
        )
        try:
            async with self._db.transaction() as session:
                channel, last_seq = await messages.open_stream(
                    session, actor=actor, channel_id=channel_id
                )
                start = messages.stream_start(
                    last_seq=last_seq, after_seq=after_seq, history_limit=history_limit
                )
                history = await messages.recent_messages(
                    session, channel_id=channel_id, up_to_seq=last_seq, limit=start.history
                )
        except BaseException:
            self._hub.unsubscribe(subscriber)
            self._limits.close_stream(actor.user_id)
            raise
        return _OpenStream(subscriber, actor.username, channel, start.after_seq, last_seq, history)

    async def _deliver(self, stream: _OpenStream, context: Context, *, max_batch: int) -> None:
        channel_id = stream.channel.id
        viewer = stream.subscriber.user_id
        presence = self._awareness.presence

        presence.enter(channel_id, viewer, stream.username)
        try:
            # Written, not kept: the frame lists everyone online, and the
            # stream outlives it by hours.
            await context.write(
                wire.joined_frame(
                    stream.channel, stream.last_seq, presence.online_users(channel_id)
                )
            )
            delivery = Delivery(
                stream.subscriber,
                start_after=stream.start_after,
                fetch=functools.partial(self._fetch, channel_id, viewer),
                write=context.write,
                framing=FRAMING,
                max_batch=max(1, min(max_batch, 1000)),
            )
            # The writer is a task of its own: each write it waits for resumes it
            # alone, not the call's whole chain of interceptors and handlers.
            # Cancelling the call cancels it (a task waiting on a task passes
            # its cancellation on).
            writer = asyncio.create_task(
                delivery.run(
                    history=[wire.encode_for(message, viewer) for message in stream.take_history()],
                    catch_up_to=stream.last_seq,
                )
            )
            try:
                await writer
            finally:
                if not writer.done():
                    writer.cancel()
                    await asyncio.wait({writer})
        finally:
            presence.leave(channel_id, viewer)
            self._hub.unsubscribe(stream.subscriber)
            self._limits.close_stream(stream.subscriber.user_id)

    async def _fetch(
        self, channel_id: int, viewer: int, first_seq: int, last_seq: int
    ) -> list[wire.EncodedEntry]:
        async with self._db.transaction() as session:
            found = await messages.timeline_between(
                session, channel_id=channel_id, first_seq=first_seq, last_seq=last_seq
            )
        return [wire.encode_for(entry, viewer) for entry in found]

    async def _read_sends(
        self,
        requests: AsyncIterator[chat_pb2.ChatStreamRequest],
        actor: Actor,
        stream: _OpenStream,
    ) -> None:
        subscriber = stream.subscriber
        # Made at the first send: most streams only listen.
        in_flight: set[asyncio.Future[MessageView]] | None = None
        async for frame in requests:
            if subscriber.ends_with is not None:
                return
            if frame.HasField("typing"):
                self._awareness.typing(stream.channel.id, actor.user_id, actor.username)
                continue
            if not frame.HasField("send"):
                subscriber.push_control(_error_frame(_already_joined(), ""))
                continue
            key = frame.send.client_message_id
            try:
                self._limits.check_message(actor.user_id, stream.channel.id)
                posted = self._poster.submit(
                    actor=actor,
                    channel_id=stream.channel.id,
                    content=frame.send.content,
                    client_message_id=key,
                    reply_to_id=frame.send.reply_to_id,
                )
            except errors.DomainError as error:
                subscriber.push_control(_error_frame(error, key))
                continue
            if in_flight is None:
                in_flight = set()
            in_flight.add(posted)
            posted.add_done_callback(in_flight.discard)
            posted.add_done_callback(functools.partial(_acknowledge, subscriber, key))
            if len(in_flight) >= MAX_SENDS_IN_FLIGHT:
                await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)


def _already_joined() -> errors.FailedPrecondition:
    return errors.FailedPrecondition(
        "Already joined: send `send` frames", reason=errors.Reason.ALREADY_JOINED
    )


def _error_frame(error: errors.DomainError, key: str) -> bytes:
    return wire.error_frame(status.rpc_code(error), error.message, key, status.details_of(error))


def _end_on_failure(subscriber: Subscriber[Encoded], reader: asyncio.Task[None]) -> None:
    """A reader that fails (a malformed frame, a bug) ends its stream with that failure."""
    if not reader.cancelled() and (failure := reader.exception()) is not None:
        subscriber.close(failure if isinstance(failure, Exception) else RuntimeError(failure))


def _acknowledge(
    subscriber: Subscriber[Encoded], key: str, posted: asyncio.Future[MessageView]
) -> None:
    if posted.cancelled():
        return
    error = posted.exception()
    if error is None:
        subscriber.push_control(wire.ack_frame(key, posted.result(), subscriber.user_id))
    elif isinstance(error, errors.DomainError):
        subscriber.push_control(_error_frame(error, key))
    else:
        log.error("posting a message failed", exc_info=error)
        subscriber.push_control(wire.error_frame(code_pb2.INTERNAL, status.INTERNAL_MESSAGE, key))
