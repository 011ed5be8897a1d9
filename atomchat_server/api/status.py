"""The one place that turns failures into gRPC statuses.

Domain errors become their status code with the error's English message and
google.rpc details: an ErrorInfo carrying the stable reason, a BadRequest
listing field violations where there are any, and a RetryInfo on every
UNAVAILABLE (and on any error that names a `retry_after`) saying when to try
again (the database driver's failures arrive here already as domain errors:
db/errors.py).
Anything else is a bug: it is logged, and the client gets INTERNAL
"Internal Server Error", which reveals nothing.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from atomchat_server.domain import errors
from atomchat_server.interception import (
    Behaviour,
    Context,
    Deserializer,
    Handler,
    WrappedOnce,
    is_own_method,
    wrap_handler,
)

log = logging.getLogger(__name__)

ERROR_DOMAIN = "atomchat"

CODES: dict[type[errors.DomainError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
}


def code_of(error: errors.DomainError) -> grpc.StatusCode:
    for kind in type(error).__mro__:
        if kind in CODES:
            return CODES[kind]
    return grpc.StatusCode.UNKNOWN


def rpc_code(error: errors.DomainError) -> int:
    """The google.rpc.Code number (as used in ChatError frames)."""
    return int(code_of(error).value[0])


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


# What an UNAVAILABLE asks the client to wait before it tries again, unless
# the error says otherwise.
RETRY_AFTER_SECONDS = 1.0


def retry_after(error: errors.DomainError) -> float | None:
    """Seconds the client should wait before retrying, or None when retrying will not help."""
    if error.retry_after is None and isinstance(error, errors.Unavailable):
        return RETRY_AFTER_SECONDS
    return error.retry_after


def details_of(error: errors.DomainError) -> list[any_pb2.Any]:
    """The google.rpc details of an error: ErrorInfo always, RetryInfo, QuotaFailure and
    BadRequest when the error says when to retry (every UNAVAILABLE does), which limit,
    or which fields."""
    info = error_details_pb2.ErrorInfo(
        reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata
    )
    details = [_pack(info)]
    delay = retry_after(error)
    if delay is not None:
        wait = duration_pb2.Duration()
        wait.FromTimedelta(timedelta(seconds=delay))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=wait)))
    if error.quota is not None:
        violation = error_details_pb2.QuotaFailure.Violation(
            subject=error.quota, description=error.message
        )
        details.append(_pack(error_details_pb2.QuotaFailure(violations=[violation])))
    violations = getattr(error, "violations", ())
    if violations:
        field_violations = [
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in violations
        ]
        details.append(_pack(error_details_pb2.BadRequest(field_violations=field_violations)))
    return details


def status_of(error: errors.DomainError) -> grpc.Status:
    return rpc_status.to_status(
        status_pb2.Status(code=rpc_code(error), message=error.message, details=details_of(error))
    )


INTERNAL_MESSAGE = "Internal Server Error"


async def abort(context: Context, error: errors.DomainError) -> None:
    status = status_of(error)
    await context.abort(status.code, status.details, status.trailing_metadata)


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        self._wrapped = WrappedOnce(_with_statuses)

    async def intercept_service(
        self, continuation: Any, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler: grpc.RpcMethodHandler[Any, Any] = await continuation(handler_call_details)
        if handler is None or not is_own_method(handler_call_details.method):
            return handler
        return self._wrapped(handler_call_details.method, handler)


def _with_statuses(method: str, handler: Handler) -> Handler:
    mapped = functools.partial(_mapped, streamed=handler.request_streaming)
    return wrap_handler(handler, mapped, deserializer=_tolerant)


@dataclass(frozen=True, slots=True)
class _Malformed:
    """What a request that does not parse becomes, so that it is answered, not crashed on."""

    problem: str

    def error(self) -> errors.InvalidArgument:
        return errors.InvalidArgument(
            f"Malformed request: {self.problem}", reason=errors.Reason.MALFORMED_REQUEST
        )


def _tolerant(deserializer: Deserializer | None) -> Deserializer | None:
    if deserializer is None:
        return None
    parse = deserializer

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as exc:
            return _Malformed(str(exc).rpartition(": ")[2] or "cannot parse")

    return deserialize


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A stream's requests; a malformed one raises INVALID_ARGUMENT where it is read."""
    async for request in requests:
        if isinstance(request, _Malformed):
            raise request.error()
        yield request


async def _mapped(behaviour: Behaviour, request: Any, context: Context, *, streamed: bool) -> Any:
    try:
        if streamed:
            request = _checked(request)
        elif isinstance(request, _Malformed):
            raise request.error()
        return await behaviour(request, context)
    except grpc.aio.AbortError:
        raise
    except errors.DomainError as error:
        await abort(context, error)
    except Exception:
        if context.done():
            # The client went away while a stream was writing to it.
            log.debug("write to a finished call", exc_info=True)
            return None
        log.exception("unexpected error")
        await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
    return None
