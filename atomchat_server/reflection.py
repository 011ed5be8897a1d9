"""Server reflection as grpc.reflection.v1 and v1alpha.

grpcio-reflection serves only `grpc.reflection.v1alpha.ServerReflection`;
newer grpcurl, Postman and buf ask for `grpc.reflection.v1` first. The two
protocols are the same messages in another package (identical field
numbers), so v1 is served by the same servicer under the v1 name, and the
v1 file descriptor (v1alpha's, renamed) joins the default pool so that v1
can describe itself too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

V1ALPHA_SERVICE_NAME: str = reflection.SERVICE_NAME
V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE_NAME = f"{V1_PACKAGE}.ServerReflection"
V1_FILE = "grpc/reflection/v1/reflection.proto"
SERVICE_NAMES = (V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)


def _add_v1_descriptor(pool: Any) -> None:
    """grpc/reflection/v1/reflection.proto in `pool`, made from v1alpha's file."""
    try:
        pool.FindFileByName(V1_FILE)
    except KeyError:
        pass
    else:
        return
    alpha = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(alpha)
    old_package = alpha.package
    text = alpha.SerializeToString()
    v1 = descriptor_pb2.FileDescriptorProto.FromString(text)
    v1.name = V1_FILE
    v1.package = V1_PACKAGE
    for message in v1.message_type:
        for field in message.field:
            if field.type_name.startswith(f".{old_package}."):
                field.type_name = field.type_name.replace(old_package, V1_PACKAGE, 1)
    for service in v1.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old_package, V1_PACKAGE, 1)
            method.output_type = method.output_type.replace(old_package, V1_PACKAGE, 1)
    v1.options.Clear()
    pool.Add(v1)


def enable(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Reflection over `service_names` (and both reflection services) on `server`."""
    pool = descriptor_pool.Default()
    _add_v1_descriptor(pool)
    names = (*service_names, *SERVICE_NAMES)
    servicer = reflection.aio.ReflectionServicer(names, pool=pool)
    reflection.enable_server_reflection(names, server, pool=pool)
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                V1_SERVICE_NAME,
                {
                    "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                        servicer.ServerReflectionInfo,
                        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
                    )
                },
            ),
        )
    )
