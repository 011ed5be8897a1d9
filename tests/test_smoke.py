from __future__ import annotations

from atomchat.v1 import users_pb2

from tests.support import People


async def test_register_login_get_me(people: People) -> None:
    person = await people.user()
    me = await person.api.users.GetMe(users_pb2.GetMeRequest())
    assert me.username == person.username
