"""InboxService: one stream per user (SPEC §9).

The stream subscribes to the inbox hub first, then reads the user's latest
event id and the state of their channels: whatever happens from then on
reaches it. It sends its headers then (the client knows it is live), and the
stored events after its starting point in id order
(read from the database a page at a time), then, as they come, new stored
events, `activity` for the channels that moved and heartbeats on a quiet
stream. Blocking the user ends it with UNAUTHENTICATED.
"""

from __future__ import annotations

from datetime import UTC, datetime

from atomchat.v1 import chat_pb2, inbox_pb2, inbox_pb2_grpc

from atomchat_server.api import convert
from atomchat_server.auth.interceptor import current_actor
from atomchat_server.db.engine import Database
from atomchat_server.domain import channel_rows, inbox, timeline_store
from atomchat_server.interception import Context
from atomchat_server.limits import Limits
from atomchat_server.realtime.inbox_hub import InboxHub, InboxSubscriber

PAGE = 100


class InboxServicer(inbox_pb2_grpc.InboxServiceServicer):
    def __init__(self, database: Database, hub: InboxHub, limits: Limits) -> None:
        self._db = database
        self._hub = hub
        self._limits = limits

    async def StreamInbox(  # type: ignore[override]
        self, request: inbox_pb2.StreamInboxRequest, context: Context
    ) -> None:
        actor = current_actor()
        self._limits.open_stream(actor.user_id)
        subscriber = self._hub.subscribe(actor.user_id)
        try:
            sent_id = await self._load(
                subscriber, after_id=request.after_id if request.HasField("after_id") else None
            )
            # The headers tell the client the stream is live: nothing is missed from here on.
            await context.send_initial_metadata(())
            await self._run(subscriber, context, sent_id)
        finally:
            self._hub.unsubscribe(subscriber)
            self._limits.close_stream(actor.user_id)

    async def _load(self, subscriber: InboxSubscriber, *, after_id: int | None = None) -> int:
        """Read the user's channels and latest event id; returns where to start from."""
        async with self._db.transaction() as session:
            connection = await timeline_store.raw_connection(session)
            last_id = await inbox.last_id(connection, user_id=subscriber.user_id)
            start = inbox.start_after(last_id=last_id, after_id=after_id)
            channels = await channel_rows.channel_activity(connection, user_id=subscriber.user_id)
        self._hub.loaded(subscriber, channels, last_id)
        return start

    async def _run(self, subscriber: InboxSubscriber, context: Context, sent_id: int) -> None:
        user_id = subscriber.user_id
        while True:
            await subscriber.wait(sent_id)
            subscriber.active = True
            if subscriber.ends_with is not None:
                raise subscriber.ends_with
            if subscriber.reload:
                self._hub.reloading(subscriber)
                await self._load(subscriber)
            if subscriber.recount:
                await self._recount(subscriber)
            wrote = False
            while sent_id < subscriber.stored_to:
                async with self._db.transaction() as session:
                    connection = await timeline_store.raw_connection(session)
                    page = await inbox.read(
                        connection,
                        user_id=user_id,
                        after_id=sent_id,
                        up_to=subscriber.stored_to,
                        limit=PAGE,
                    )
                if not page:
                    # Trimmed meanwhile (only the last 1000 are kept).
                    sent_id = subscriber.stored_to
                    break
                for entry in page:
                    await context.write(convert.inbox_event(entry, user_id))
                    sent_id = entry.id
                wrote = True
            for activity in subscriber.take_owed():
                await context.write(convert.activity(activity))
                wrote = True
            if subscriber.heartbeat_due and not wrote:
                await context.write(_heartbeat())
            subscriber.heartbeat_due = False

    async def _recount(self, subscriber: InboxSubscriber) -> None:
        channel_ids = subscriber.take_recount()
        async with self._db.transaction() as session:
            connection = await timeline_store.raw_connection(session)
            found = await channel_rows.channel_activity(
                connection, user_id=subscriber.user_id, channel_ids=channel_ids
            )
        self._hub.recounted(subscriber, channel_ids, found)


def _heartbeat() -> inbox_pb2.InboxEvent:
    server_time = convert.timestamp(datetime.now(UTC))
    return inbox_pb2.InboxEvent(heartbeat=chat_pb2.ChatHeartbeat(server_time=server_time))
