"""UserService: register, log in, profile, block and unblock."""

from __future__ import annotations

from atomchat.v1 import resources_pb2, users_pb2, users_pb2_grpc

from atomchat_server.api import convert
from atomchat_server.auth.interceptor import current_actor
from atomchat_server.auth.passwords import Passwords
from atomchat_server.auth.tokens import Tokens
from atomchat_server.db.engine import Database
from atomchat_server.domain import users
from atomchat_server.interception import Context


class UserServicer(users_pb2_grpc.UserServiceServicer):
    def __init__(self, database: Database, passwords: Passwords, tokens: Tokens) -> None:
        self._db = database
        self._passwords = passwords
        self._tokens = tokens

    async def Register(
        self, request: users_pb2.RegisterRequest, context: Context
    ) -> resources_pb2.User:
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
        async with self._db.transaction() as session:
            candidate = await users.find_login_candidate(session, username=request.username)
        user = await users.authenticate(
            candidate, password=request.password, verify_password=self._passwords.verify
        )
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
