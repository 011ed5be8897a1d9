"""UserService: register, log in, profile, block and unblock."""

from __future__ import annotations

from collections.abc import Sequence

from atomchat.v1 import resources_pb2, users_pb2, users_pb2_grpc

from atomchat_server.api import convert
from atomchat_server.api.peers import client_address
from atomchat_server.auth.interceptor import current_actor
from atomchat_server.auth.passwords import Passwords
from atomchat_server.auth.tokens import Tokens
from atomchat_server.config import IPNetwork
from atomchat_server.db.engine import Database
from atomchat_server.domain import errors, users
from atomchat_server.domain.usernames import username_key
from atomchat_server.interception import Context
from atomchat_server.limits import Limits


class UserServicer(users_pb2_grpc.UserServiceServicer):
    def __init__(
        self,
        database: Database,
        passwords: Passwords,
        tokens: Tokens,
        limits: Limits,
        trusted_proxies: Sequence[IPNetwork],
    ) -> None:
        self._db = database
        self._passwords = passwords
        self._tokens = tokens
        self._limits = limits
        self._trusted_proxies = trusted_proxies

    def _check_client(self, context: Context) -> None:
        """The per-address limit and the hash queue, before anything else is spent."""
        address = client_address(
            context.peer(), context.invocation_metadata(), self._trusted_proxies
        )
        self._limits.check_client(address)
        self._passwords.check_room()

    async def Register(
        self, request: users_pb2.RegisterRequest, context: Context
    ) -> resources_pb2.User:
        self._check_client(context)
        async with self._db.transaction() as session:
            await users.ensure_can_register(
                session, username=request.username, password=request.password
            )
        hashed = await self._passwords.hash(request.password)
        async with self._db.transaction() as session:
            user = await users.create_user(
                session, username=request.username, hashed_password=hashed
            )
        return convert.user(user)

    async def Login(
        self, request: users_pb2.LoginRequest, context: Context
    ) -> users_pb2.LoginResponse:
        users.validate_login(request.username, request.password)
        self._check_client(context)
        name_key = username_key(request.username)
        self._limits.check_login(name_key)
        async with self._db.transaction() as session:
            candidate = await users.find_login_candidate(session, username=request.username)
        try:
            user = await users.authenticate(
                candidate, password=request.password, verify_password=self._passwords.verify
            )
        except errors.Unauthenticated:
            self._limits.login_failed(name_key)
            raise
        self._limits.login_succeeded(name_key)
        issued = self._tokens.issue(user)
        return users_pb2.LoginResponse(
            access_token=issued.token,
            token_type="bearer",
            expires_in=issued.expires_in,
            user=convert.user(user),
        )

    async def GetMe(self, request: users_pb2.GetMeRequest, context: Context) -> resources_pb2.User:
        async with self._db.transaction() as session:
            user = await users.get_user(session, user_id=current_actor().user_id)
        return convert.user(user)

    async def LookupUser(
        self, request: users_pb2.LookupUserRequest, context: Context
    ) -> resources_pb2.User:
        async with self._db.transaction() as session:
            user = await users.lookup_user(
                session, actor=current_actor(), username=request.username
            )
        return convert.user(user)

    async def BlockUser(
        self, request: users_pb2.BlockUserRequest, context: Context
    ) -> resources_pb2.User:
        async with self._db.transaction() as session:
            user = await users.set_active(
                session, actor=current_actor(), user_id=request.user_id, active=False
            )
        return convert.user(user)

    async def UnblockUser(
        self, request: users_pb2.UnblockUserRequest, context: Context
    ) -> resources_pb2.User:
        async with self._db.transaction() as session:
            user = await users.set_active(
                session, actor=current_actor(), user_id=request.user_id, active=True
            )
        return convert.user(user)
