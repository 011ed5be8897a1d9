"""Generate the OpenAPI 3 document of the HTTP/JSON API from the protos.

    python scripts/generate_openapi.py   # rewrite generated/openapi.json

The document describes what Envoy's gRPC-JSON transcoder serves: one path per
`google.api.http` rule, path and query parameters and the JSON body as the
rule binds them, request and response schemas from the messages (proto field
names, 64-bit integers as strings, enums by name, as envoy.yaml prints them),
the google.rpc.Status error body and bearer authentication. Descriptions come
from the protos' comments: the descriptor set Envoy loads
(generated/atomchat/v1/atomchat_descriptor.binpb) carries no comments, so the
same sources are compiled here once more with their source info, and the
document is made from that set. scripts/generate_proto.py runs this script
with the rest of generated/, so its --check finds a stale document too.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUTPUT = ROOT / "generated" / "openapi.json"
PACKAGE = "atomchat.v1"
# The services Envoy transcodes, in the order envoy.yaml lists them.
SERVICES = (
    "UserService",
    "ChannelService",
    "JoinRequestService",
    "MemberService",
    "ChatService",
    "InboxService",
)
# Methods anyone may call: no bearer token.
PUBLIC = {"atomchat.v1.UserService.Register", "atomchat.v1.UserService.Login"}

Schema = dict[str, Any]
FieldProto = descriptor_pb2.FieldDescriptorProto

# descriptor.proto field numbers, for SourceCodeInfo paths.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_ENUM = 2, 3, 4
_ENUM_VALUE, _SERVICE_METHOD = 2, 2

_SCALARS: dict[int, Schema] = {
    FieldProto.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldProto.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldProto.TYPE_INT64: {"type": "string", "format": "int64"},
    FieldProto.TYPE_UINT64: {"type": "string", "format": "uint64"},
    FieldProto.TYPE_SINT64: {"type": "string", "format": "int64"},
    FieldProto.TYPE_FIXED64: {"type": "string", "format": "uint64"},
    FieldProto.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    FieldProto.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldProto.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldProto.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FieldProto.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0},
    FieldProto.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0},
    FieldProto.TYPE_BOOL: {"type": "boolean"},
    FieldProto.TYPE_STRING: {"type": "string"},
    FieldProto.TYPE_BYTES: {"type": "string", "format": "byte"},
}

# Well-known types have their own JSON forms (the proto3 JSON mapping).
_WELL_KNOWN: dict[str, Schema] = {
    "google.protobuf.Timestamp": {
        "type": "string",
        "format": "date-time",
        "description": "RFC 3339, UTC.",
    },
    "google.protobuf.FieldMask": {
        "type": "string",
        "description": "Field names separated by commas.",
    },
    "google.protobuf.Empty": {"type": "object", "description": "Nothing."},
    "google.protobuf.Duration": {"type": "string", "description": 'Seconds, e.g. "1.5s".'},
    "google.protobuf.Any": {
        "type": "object",
        "description": "A message of the type that `@type` names, with its fields.",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": True,
    },
}

# The google.api.http option of a method (its stubs type it loosely).
_HTTP: Any = annotations_pb2.http

_PATH_PARAMETER = re.compile(r"\{([a-z_][a-z0-9_.]*)(?:=[^}]*)?\}")


@dataclass
class Protos:
    """The messages, enums and comments of a descriptor set, by full name."""

    messages: dict[str, descriptor_pb2.DescriptorProto] = field(default_factory=dict)
    enums: dict[str, descriptor_pb2.EnumDescriptorProto] = field(default_factory=dict)
    services: dict[str, descriptor_pb2.ServiceDescriptorProto] = field(default_factory=dict)
    comments: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, files: descriptor_pb2.FileDescriptorSet) -> Protos:
        protos = cls()
        for file in files.file:
            protos._add_file(file)
        return protos

    def _add_file(self, file: descriptor_pb2.FileDescriptorProto) -> None:
        comments = {
            tuple(location.path): _comment(location.leading_comments)
            for location in file.source_code_info.location
            if location.leading_comments.strip()
        }
        prefix = file.package
        for index, message in enumerate(file.message_type):
            self._add_message(message, prefix, (_FILE_MESSAGE, index), comments)
        for index, enum in enumerate(file.enum_type):
            self._add_enum(enum, prefix, (_FILE_ENUM, index), comments)
        for index, service in enumerate(file.service):
            name = f"{prefix}.{service.name}"
            self.services[name] = service
            self._note(name, comments, (_FILE_SERVICE, index))
            for number, method in enumerate(service.method):
                path = (_FILE_SERVICE, index, _SERVICE_METHOD, number)
                self._note(f"{name}.{method.name}", comments, path)

    def _add_message(
        self,
        message: descriptor_pb2.DescriptorProto,
        prefix: str,
        path: tuple[int, ...],
        comments: dict[tuple[int, ...], str],
    ) -> None:
        name = f"{prefix}.{message.name}"
        self.messages[name] = message
        self._note(name, comments, path)
        for index, item in enumerate(message.field):
            self._note(f"{name}.{item.name}", comments, (*path, _MESSAGE_FIELD, index))
        for index, nested in enumerate(message.nested_type):
            self._add_message(nested, name, (*path, _MESSAGE_NESTED, index), comments)
        for index, enum in enumerate(message.enum_type):
            self._add_enum(enum, name, (*path, _MESSAGE_ENUM, index), comments)

    def _add_enum(
        self,
        enum: descriptor_pb2.EnumDescriptorProto,
        prefix: str,
        path: tuple[int, ...],
        comments: dict[tuple[int, ...], str],
    ) -> None:
        name = f"{prefix}.{enum.name}"
        self.enums[name] = enum
        self._note(name, comments, path)
        for index, value in enumerate(enum.value):
            self._note(f"{name}.{value.name}", comments, (*path, _ENUM_VALUE, index))

    def _note(self, name: str, comments: dict[tuple[int, ...], str], path: tuple[int, ...]) -> None:
        if path in comments:
            self.comments[name] = comments[path]


def _comment(text: str) -> str:
    """A proto comment as one paragraph per blank-line-separated block."""
    blocks = text.split("\n\n")
    paragraphs = [" ".join(line.strip() for line in block.splitlines()) for block in blocks]
    return "\n\n".join(paragraph.strip() for paragraph in paragraphs if paragraph.strip())


@dataclass
class Document:
    """The OpenAPI document under construction: schemas are added as referenced."""

    protos: Protos
    schemas: dict[str, Schema] = field(default_factory=dict)

    def reference(self, type_name: str) -> Schema:
        name = type_name.lstrip(".")
        if name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[name])
        key = _schema_key(name)
        if key not in self.schemas:
            self.schemas[key] = {}
            self.schemas[key] = (
                self._enum_schema(name) if name in self.protos.enums else self._message_schema(name)
            )
        return {"$ref": f"#/components/schemas/{key}"}

    def field_schema(self, message: str, item: FieldProto) -> Schema:
        if item.type in (FieldProto.TYPE_MESSAGE, FieldProto.TYPE_ENUM):
            schema = self.reference(item.type_name)
        else:
            schema = dict(_SCALARS[item.type])
        if item.label == FieldProto.LABEL_REPEATED:
            schema = {"type": "array", "items": schema}
        description = self.protos.comments.get(f"{message}.{item.name}")
        if description:
            # A $ref's siblings are ignored before OpenAPI 3.1: wrap it.
            schema = {"allOf": [schema], "description": description} if "$ref" in schema else schema
            schema.setdefault("description", description)
        return schema

    def object_schema(self, name: str, leave_out: frozenset[str] = frozenset()) -> Schema:
        message = self.protos.messages[name]
        properties = {
            item.name: self.field_schema(name, item)
            for item in message.field
            if item.name not in leave_out
        }
        schema: Schema = {"type": "object", "properties": properties}
        oneofs = self._oneofs(message, leave_out)
        if oneofs:
            schema["description"] = "\n\n".join(
                filter(None, [self.protos.comments.get(name, ""), *oneofs])
            )
        elif name in self.protos.comments:
            schema["description"] = self.protos.comments[name]
        return schema

    def _message_schema(self, name: str) -> Schema:
        return self.object_schema(name)

    def _enum_schema(self, name: str) -> Schema:
        enum = self.protos.enums[name]
        lines = [
            f"- `{value.name}`: {self.protos.comments[f'{name}.{value.name}']}"
            for value in enum.value
            if f"{name}.{value.name}" in self.protos.comments
        ]
        description = "\n".join(filter(None, [self.protos.comments.get(name, ""), "", *lines]))
        schema: Schema = {"type": "string", "enum": [value.name for value in enum.value]}
        if description.strip():
            schema["description"] = description.strip()
        return schema

    @staticmethod
    def _oneofs(message: descriptor_pb2.DescriptorProto, leave_out: frozenset[str]) -> list[str]:
        groups: dict[int, list[str]] = {}
        for item in message.field:
            real_oneof = item.HasField("oneof_index") and not item.proto3_optional
            if real_oneof and item.name not in leave_out:
                groups.setdefault(item.oneof_index, []).append(item.name)
        return [
            f"At most one of: {', '.join(f'`{name}`' for name in names)}."
            for names in groups.values()
        ]


def _schema_key(full_name: str) -> str:
    return full_name.removeprefix(f"{PACKAGE}.")


def _rule(method: descriptor_pb2.MethodDescriptorProto) -> http_pb2.HttpRule | None:
    options = method.options
    if not options.HasExtension(_HTTP):
        return None
    rule: http_pb2.HttpRule = options.Extensions[_HTTP]
    return rule


def _bindings(rule: http_pb2.HttpRule) -> Iterator[tuple[str, str, str]]:
    """(verb, path template, body) for the rule and its additional bindings."""
    for binding in (rule, *rule.additional_bindings):
        kind = binding.WhichOneof("pattern")
        if kind == "custom":
            yield binding.custom.kind.lower(), binding.custom.path, binding.body
        elif kind is not None:
            yield kind, getattr(binding, kind), binding.body


def _query_parameters(
    document: Document, message: str, prefix: str, taken: set[str]
) -> list[Schema]:
    """Every field not bound to the path or body, as the transcoder reads it from the query."""
    parameters: list[Schema] = []
    for item in document.protos.messages[message].field:
        name = f"{prefix}{item.name}"
        if name in taken:
            continue
        if item.type == FieldProto.TYPE_MESSAGE and item.type_name.lstrip(".") not in _WELL_KNOWN:
            if item.label != FieldProto.LABEL_REPEATED:
                nested = item.type_name.lstrip(".")
                parameters += _query_parameters(document, nested, f"{name}.", taken)
            continue
        schema = document.field_schema(message, item)
        description = schema.pop("description", None) if "allOf" not in schema else None
        parameter: Schema = {"name": name, "in": "query", "schema": schema}
        if description:
            parameter["description"] = description
        if item.label == FieldProto.LABEL_REPEATED:
            parameter["explode"] = True
        parameters.append(parameter)
    return parameters


def _field(document: Document, message: str, dotted: str) -> tuple[str, FieldProto]:
    """The field a dotted path names, with the full name of the message holding it."""
    *parents, last = dotted.split(".")
    for part in parents:
        item = next(f for f in document.protos.messages[message].field if f.name == part)
        message = item.type_name.lstrip(".")
    return message, next(f for f in document.protos.messages[message].field if f.name == last)


def _operation(
    document: Document,
    service: str,
    method: descriptor_pb2.MethodDescriptorProto,
    path: str,
    body: str,
) -> Schema:
    full_name = f"{PACKAGE}.{service}.{method.name}"
    request = method.input_type.lstrip(".")
    response = method.output_type.lstrip(".")
    comment = document.protos.comments.get(full_name, "")
    operation: Schema = {
        "tags": [service],
        "operationId": f"{service}_{method.name}",
        "summary": comment.split(". ")[0].rstrip(".") if comment else method.name,
        "description": f"{comment}\n\ngRPC: `{full_name}`" if comment else f"gRPC: `{full_name}`",
    }
    path_names = _PATH_PARAMETER.findall(path)
    parameters: list[Schema] = []
    for name in path_names:
        holder, item = _field(document, request, name)
        schema = document.field_schema(holder, item)
        description = schema.pop("description", None)
        parameter: Schema = {"name": name, "in": "path", "required": True, "schema": schema}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    taken = set(path_names)
    if body == "*":
        schema = document.object_schema(request, leave_out=frozenset(path_names))
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    else:
        if body:
            holder, item = _field(document, request, body)
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": document.field_schema(holder, item)}},
            }
            taken.add(body)
        parameters += _query_parameters(document, request, "", taken)
    if parameters:
        operation["parameters"] = parameters
    result = document.reference(response)
    if method.server_streaming:
        content = {"text/event-stream": {"schema": result}}
        described = "Server-sent events: each event is one `data:` line of this JSON, compact."
    else:
        content = {"application/json": {"schema": result}}
        described = "OK"
    operation["responses"] = {
        "200": {"description": described, "content": content},
        "default": {"$ref": "#/components/responses/Error"},
    }
    if full_name in PUBLIC:
        operation["security"] = []
    return operation


def _path_key(template: str) -> str:
    """An HTTP rule's path as an OpenAPI path: `{name=…}` patterns become `{name}`."""
    return _PATH_PARAMETER.sub(lambda match: "{" + match.group(1) + "}", template)


def build(files: descriptor_pb2.FileDescriptorSet) -> Schema:
    """The OpenAPI document of every transcoded method in `files`."""
    protos = Protos.load(files)
    document = Document(protos)
    paths: dict[str, Schema] = {}
    tags: list[Schema] = []
    for service in SERVICES:
        full_service = f"{PACKAGE}.{service}"
        tag: Schema = {"name": service}
        if full_service in protos.comments:
            tag["description"] = protos.comments[full_service]
        tags.append(tag)
        for method in protos.services[full_service].method:
            rule = _rule(method)
            if rule is None:
                continue
            for verb, template, body in _bindings(rule):
                operation = _operation(document, service, method, template, body)
                paths.setdefault(_path_key(template), {})[verb] = operation
    status = document.reference(".google.rpc.Status")
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "AtomChat",
            "version": "v1",
            "description": (
                "Real-time channel chat. Every route below is a gRPC method of "
                "`atomchat.v1`, transcoded to JSON by Envoy. Log in with "
                "`POST /v1/auth/token`, then press Authorize and paste the "
                "`access_token`. Errors are a google.rpc.Status with the gRPC "
                "`code`, an English `message` and `details` (ErrorInfo, "
                "BadRequest, RetryInfo, QuotaFailure)."
            ),
        },
        "servers": [{"url": "/"}],
        "tags": tags,
        "security": [{"bearer": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "The `access_token` of `POST /v1/auth/token`.",
                }
            },
            "responses": {
                "Error": {
                    "description": (
                        "The gRPC status as JSON, with the HTTP status that stands for its code "
                        "(400, 401, 403, 404, 409, 412, 429, 503, …)."
                    ),
                    "content": {"application/json": {"schema": status}},
                }
            },
            "schemas": dict(sorted(document.schemas.items())),
        },
    }


def render(document: Schema) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def include_dirs() -> list[Path]:
    """The import roots of scripts/generate_proto.py: proto/, the well-known types, googleapis."""
    googleapis = Path(annotations_pb2.__file__).resolve().parent.parent.parent
    return [PROTO_DIR, Path(str(resources.files("grpc_tools") / "_proto")), googleapis]


def compile_with_comments() -> descriptor_pb2.FileDescriptorSet:
    """The protos' descriptor set, as scripts/generate_proto.py makes it, with source info."""
    sources = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "descriptor.binpb"
        args = [
            "grpc_tools.protoc",
            *(f"-I{d}" for d in include_dirs()),
            f"--descriptor_set_out={out}",
            "--include_imports",
            "--include_source_info",
            *sources,
            "google/rpc/status.proto",
            "google/rpc/error_details.proto",
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT, help="default: %(default)s")
    options = parser.parse_args(argv)
    options.output.write_text(render(build(compile_with_comments())), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
