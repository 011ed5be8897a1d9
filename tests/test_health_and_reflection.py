"""Health checking and reflection, served without a token (SPEC §4, "Also served")."""

from __future__ import annotations

from typing import Any, cast

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from atomchat_server.app import SERVICE_NAMES
from tests.support import health_stub

SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("service", ["", *SERVICE_NAMES])
async def test_health_is_serving_for_the_server_and_each_service(
    grpc_channel: grpc.aio.Channel, service: str
) -> None:
    stub = health_stub(grpc_channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    assert response.status == SERVING


async def test_health_of_an_unknown_service_is_not_found(grpc_channel: grpc.aio.Channel) -> None:
    stub = health_stub(grpc_channel)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Check(health_pb2.HealthCheckRequest(service="atomchat.v1.Nothing"), timeout=10)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_watch_reports_serving(grpc_channel: grpc.aio.Channel) -> None:
    stub = health_stub(grpc_channel)
    call = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
    try:
        first = await call.read()
    finally:
        call.cancel()
    assert isinstance(first, health_pb2.HealthCheckResponse)
    assert first.status == SERVING


async def reflect(
    grpc_channel: grpc.aio.Channel, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    stub: Any = reflection_pb2_grpc.ServerReflectionStub(cast(Any, grpc_channel))
    call = stub.ServerReflectionInfo(timeout=10)
    await call.write(request)
    await call.done_writing()
    response = await call.read()
    assert isinstance(response, reflection_pb2.ServerReflectionResponse)
    return response


async def test_reflection_lists_every_service(grpc_channel: grpc.aio.Channel) -> None:
    response = await reflect(grpc_channel, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {service.name for service in response.list_services_response.service}
    assert names == {
        *SERVICE_NAMES,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }


async def test_reflection_describes_a_service(grpc_channel: grpc.aio.Channel) -> None:
    response = await reflect(
        grpc_channel,
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="atomchat.v1.UserService"),
    )
    files = response.file_descriptor_response.file_descriptor_proto
    assert files
    assert any(b"atomchat/v1/users.proto" in descriptor for descriptor in files)
