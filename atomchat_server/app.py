"""Wiring: the database, the event bus and hub, the servicers and interceptors,
health checking and reflection, in one object that starts and stops them.

Health follows the database: SERVING once it answers, NOT_SERVING as soon
as a check finds it unable to (a unit of work or a batch of posts that could
not reach it asks for a check at once), SERVING again once it answers.
After any such failure, once the database answers, the process catches up
as after a listener reconnect: a batch whose COMMIT was under way when the
database stopped answering may have committed, and its messages must reach
the streams here all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from datetime import timedelta

import grpc
from atomchat.v1 import (
    channels_pb2,
    channels_pb2_grpc,
    chat_pb2,
    inbox_pb2,
    inbox_pb2_grpc,
    join_requests_pb2,
    join_requests_pb2_grpc,
    members_pb2,
    members_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
)
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from sqlalchemy import text

from atomchat_server.api import wire
from atomchat_server.api.admission import OPENING, WAITING, Admission, AdmissionInterceptor
from atomchat_server.api.channels import ChannelServicer
from atomchat_server.api.chat import ChatServicer
from atomchat_server.api.inbox import InboxServicer
from atomchat_server.api.join_requests import JoinRequestServicer
from atomchat_server.api.members import MemberServicer
from atomchat_server.api.status import ErrorInterceptor
from atomchat_server.api.users import UserServicer
from atomchat_server.auth.interceptor import (
    Authenticator,
    AuthInterceptor,
)
from atomchat_server.auth.passwords import Passwords
from atomchat_server.auth.tokens import Tokens
from atomchat_server.config import Settings
from atomchat_server.db.engine import Database, asyncpg_dsn
from atomchat_server.db.index_upkeep import PendingListMerger
from atomchat_server.db.migrate import SchemaError, check_revision, check_schema, revision_of
from atomchat_server.db.timeouts import Timeouts
from atomchat_server.db.waiting import wait_for_database
from atomchat_server.domain import errors, events, messages
from atomchat_server.limits import Limit, Limits
from atomchat_server.observability import metrics
from atomchat_server.observability.call_context import note_caller
from atomchat_server.observability.calls import CallObserver
from atomchat_server.ports import PortInUse, ensure_free
from atomchat_server.poster_process import MessagePoster
from atomchat_server.realtime.awareness import Awareness, AwarenessFrames
from atomchat_server.realtime.bus import Bus
from atomchat_server.realtime.delivery import Encoded
from atomchat_server.realtime.hub import Hub
from atomchat_server.realtime.inbox_hub import InboxHub
from atomchat_server.realtime.router import EventRouter
from atomchat_server.reflection import enable as enable_reflection

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    users_pb2.DESCRIPTOR.services_by_name["UserService"].full_name,
    channels_pb2.DESCRIPTOR.services_by_name["ChannelService"].full_name,
    join_requests_pb2.DESCRIPTOR.services_by_name["JoinRequestService"].full_name,
    members_pb2.DESCRIPTOR.services_by_name["MemberService"].full_name,
    chat_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name,
    inbox_pb2.DESCRIPTOR.services_by_name["InboxService"].full_name,
)
# How often the database is checked while it answers, and while it does not.
HEALTH_CHECK_SECONDS = 5.0
HEALTH_RECHECK_SECONDS = 1.0
SERVER_OPTIONS = [
    # One server per port: without this a second server could bind it too
    # (SO_REUSEPORT) and take half of the connections.
    ("grpc.so_reuseport", 0),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    # Calls not yet taken by the application wait in gRPC's backlog, which
    # drops them at random (the client sees CANCELLED) past 1000 by default.
    # The server takes calls at once and sheds a burst itself, with a status
    # that says when to retry (api/admission.py): the backlog must never
    # reach its limits.
    ("grpc.server.max_pending_requests", 100_000),
    ("grpc.server.max_pending_requests_hard_limit", 200_000),
]


class App:
    """One AtomChat server process."""

    def __init__(self, settings: Settings, database_url: str) -> None:
        self.settings = settings
        origin = uuid.uuid4().hex[:12]
        timeouts = Timeouts(call=settings.database_timeout)
        self.database = Database(database_url, origin=origin, timeouts=timeouts)
        self.database.on_unavailable = self._database_failed
        self.hub: Hub[Encoded] = Hub(
            wire.encode_entry,
            messages.range_reader(self.database),
            buffer_limit=settings.stream_buffer,
            heartbeat_seconds=settings.heartbeat_seconds,
            stall_seconds=settings.stalled_stream_seconds,
        )
        if not settings.jwt_secret:
            raise ValueError("no jwt_secret: see atomchat_server.signing_key.with_signing_key")
        self.tokens = Tokens(
            secret=settings.jwt_secret, lifetime=timedelta(minutes=settings.token_minutes)
        )
        self.authenticator = Authenticator(
            self.tokens, self.database, max_age=settings.auth_cache_seconds
        )
        self.inboxes = InboxHub(heartbeat_seconds=settings.heartbeat_seconds)
        self.awareness = Awareness(
            self.hub,
            AwarenessFrames(typing=wire.typing_frame, presence=wire.presence_frame),
            origin=origin,
            send=self._send_ephemeral,
            heartbeat_seconds=settings.heartbeat_seconds,
            grace_seconds=settings.presence_grace_seconds,
            notice_limit=settings.presence_notice_limit,
        )
        self.router = EventRouter(
            self.hub, self.inboxes, self.awareness, self.database, users=self.authenticator
        )
        self.database.on_commit = self.router.after_commit
        self.bus = Bus(
            asyncpg_dsn(database_url),
            origin=origin,
            on_event=self.router.dispatch,
            on_reconnect=self.router.catch_up,
            timeouts=timeouts,
        )
        self.index_upkeep = PendingListMerger(asyncpg_dsn(database_url), timeouts=timeouts)
        self.poster = MessagePoster(
            asyncpg_dsn(database_url),
            origin=origin,
            on_commit=metrics.counting_posts(self._posted),
            timeouts=timeouts,
            on_unavailable=self._database_failed,
        )
        self.passwords = Passwords(workers=settings.hash_workers, max_queue=settings.hash_queue)
        self.limits = Limits(settings.limits)
        self.health = health.aio.HealthServicer()
        self.admission = Admission(
            opening=OPENING, waiting=WAITING, wait_seconds=settings.database_timeout
        )
        self.server = grpc.aio.server(
            interceptors=[
                CallObserver(),
                ErrorInterceptor(),
                AdmissionInterceptor(self.admission),
                AuthInterceptor(self.authenticator, lambda actor: note_caller(actor.user_id)),
            ],
            options=SERVER_OPTIONS,
        )
        self._add_services()
        metrics.track_streams(self.hub)
        for limit in Limit:
            metrics.RATE_LIMITED.labels(limit)  # every limit's series, from 0
        self.metrics_server: metrics.MetricsServer | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._check_now: asyncio.Event | None = None
        self._catch_up_due = False
        self._started: list[str] = []
        self.port = 0
        self.metrics_port: int | None = None

    def _posted(self, emitted: Sequence[object]) -> None:
        """A batch of the poster committed: hand it out; its rows' index keys are to merge."""
        self.router.after_commit(emitted)
        self.index_upkeep.note_writes()

    def _send_ephemeral(self, event: events.Event) -> None:
        self.bus.send(event)

    def _add_services(self) -> None:
        server = self.server
        users_pb2_grpc.add_UserServiceServicer_to_server(
            UserServicer(
                self.database,
                self.passwords,
                self.tokens,
                self.limits,
                self.settings.trusted_proxies,
            ),
            server,
        )
        presence = self.awareness.presence
        channels_pb2_grpc.add_ChannelServiceServicer_to_server(
            ChannelServicer(self.database, self.limits, presence), server
        )
        join_requests_pb2_grpc.add_JoinRequestServiceServicer_to_server(
            JoinRequestServicer(self.database), server
        )
        members_pb2_grpc.add_MemberServiceServicer_to_server(
            MemberServicer(self.database, presence), server
        )
        inbox_pb2_grpc.add_InboxServiceServicer_to_server(
            InboxServicer(self.database, self.inboxes, self.limits), server
        )
        chat = ChatServicer(self.database, self.hub, self.poster, self.limits, self.awareness)
        server.add_generic_rpc_handlers((chat.handler(),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        enable_reflection((*SERVICE_NAMES, health.SERVICE_NAME), server)

    def bind(self) -> int:
        """Bind the gRPC port (exclusively; PortInUse if taken) and return it, before
        `start()`, so that what fronts the server can start meanwhile."""
        settings = self.settings
        ensure_free(settings.host, settings.grpc_port, "gRPC")
        try:
            self.port = self.server.add_insecure_port(f"{settings.host}:{settings.grpc_port}")
        except RuntimeError as exc:
            raise PortInUse(settings.grpc_port, "gRPC") from exc
        return self.port

    async def start(self) -> int:
        """Serve; returns the gRPC port. Health says SERVING once the database answers
        and its schema is the one this code needs.

        Raises PortInUse, DatabaseUnreachable or SchemaError (each a sentence);
        `stop()` then undoes whatever had started.
        """
        settings = self.settings
        if not self.port:
            self.bind()
        await self._set_health(serving=False)
        await self.server.start()
        self._started.append("server")
        if settings.metrics_port is not None:
            ensure_free(settings.host, settings.metrics_port, "metrics")
            self.metrics_server = metrics.MetricsServer(settings.host, settings.metrics_port)
            self.metrics_port = await asyncio.to_thread(self.metrics_server.start)
        await wait_for_database(self.database.url, seconds=settings.database_wait_seconds)
        await check_schema(self.database.url)
        await self.bus.start()
        self._started.append("bus")
        await self.poster.start()
        self._started.append("poster")
        self.index_upkeep.start()
        self.hub.start()
        self.inboxes.start()
        self.awareness.presence.start()
        self._started.append("presence")
        await self.passwords.start()
        await self._set_health(serving=True)
        self._check_now = asyncio.Event()
        self._health_task = asyncio.create_task(self._watch_database(), name="health-check")
        return self.port

    async def _check_database(self) -> None:
        """The database answers, and its schema is the one this code needs."""
        async with self.database.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            check_revision(await revision_of(connection))

    def _database_failed(self) -> None:
        """Work found the database unable to answer: check it now, catch up once it answers."""
        self._catch_up_due = True
        if self._check_now is not None:
            self._check_now.set()

    async def _watch_database(self) -> None:
        assert self._check_now is not None
        serving = True
        while True:
            if serving:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(HEALTH_CHECK_SECONDS):
                        await self._check_now.wait()
            else:
                await asyncio.sleep(HEALTH_RECHECK_SECONDS)
            self._check_now.clear()
            try:
                async with asyncio.timeout(self.settings.database_timeout):
                    await self._check_database()
            except SchemaError as exc:
                if serving:
                    log.error("not serving: %s", exc)
                    serving = False
                    await self._set_health(serving=False)
            except Exception as exc:  # noqa: BLE001 - an unreachable database is NOT_SERVING
                if serving:
                    log.warning("database check failed (%r): NOT_SERVING", exc)
                    serving = False
                    await self._set_health(serving=False)
            else:
                if not serving:
                    log.info("the database answers again: SERVING")
                    serving = True
                    await self._set_health(serving=True)
                if self._catch_up_due:
                    self._catch_up_due = False
                    await self._catch_up()

    async def _catch_up(self) -> None:
        try:
            await self.router.catch_up()
        except Exception as exc:  # noqa: BLE001 - the database went away again: retried later
            log.warning("catching up after the database came back failed: %r", exc)
            self._catch_up_due = True

    async def _set_health(self, *, serving: bool) -> None:
        state = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, state)

    async def stop(self) -> None:
        """Graceful shutdown: acked messages are committed, streams end with UNAVAILABLE.

        Safe after a start that failed part of the way: stops what had started.
        """
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        await self.health.enter_graceful_shutdown()
        # No new calls from here on; calls under way get the grace period.
        stopping = asyncio.create_task(self.server.stop(self.settings.shutdown_grace))
        await asyncio.sleep(0)
        if "poster" in self._started:
            await self.poster.close()
            await self.index_upkeep.close()
        self.hub.close_all(errors.shutting_down())
        self.inboxes.close_all(errors.shutting_down())
        if "presence" in self._started:
            self.awareness.presence.stop()
        await stopping
        await self.hub.close()
        self.inboxes.close()
        if "bus" in self._started:
            await self.bus.close()
        await self.passwords.close()
        await self.database.dispose()
        if self.metrics_server is not None:
            await asyncio.to_thread(self.metrics_server.stop)
            self.metrics_server = None
