"""Hypothesis strategies for any request message, built from its proto descriptor:
random and boundary values for every field, nested messages, repeated fields,
oneofs, out-of-range enums; and random JSON for the HTTP routes."""

from __future__ import annotations

import functools
from typing import Any

from google.protobuf import descriptor, message_factory
from google.protobuf.message import Message
from hypothesis import strategies as st

FieldDescriptor = descriptor.FieldDescriptor

INT64_EDGES = [0, 1, 2, 3, 7, -1, 2**31 - 1, -(2**31), 2**53 + 1, 2**63 - 1, -(2**63)]
UINT64_EDGES = [0, 1, 2**32 - 1, 2**63, 2**64 - 1]
INT32_EDGES = [0, 1, -1, 4, 200, 201, 1000, 1001, 2**31 - 1, -(2**31)]
STRING_EDGES = [
    "",
    " ",
    "a",
    "abc",
    "moderator",
    "programmisty",
    "Программисты",
    "программистов",
    "\x00",
    "nul\x00inside",
    "\u202eevil",
    "\u200b",
    "<script>alert(1)</script>",
    "'; DROP TABLE users; --",
    "%s%n%x",
    "../../etc/passwd",
    "🎉",
    "👩\u200d👩\u200d👧",
    ":+1:",
    "@moderator hello",
    "name, description",
    "*",
]
LONG_TEXT = st.builds(
    lambda character, size: character * size, st.sampled_from("xя"), st.sampled_from([4000, 4001])
)
# Text without lone surrogates: protobuf strings are UTF-8 and cannot carry them.
TEXT = st.text(
    alphabet=st.characters(exclude_categories=["Cs"]),
    max_size=64,
)


def _integers(field: FieldDescriptor) -> st.SearchStrategy[int]:
    kind = field.type
    if kind in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return st.one_of(st.sampled_from(UINT64_EDGES), st.integers(0, 2**64 - 1))
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.one_of(st.sampled_from([0, 1, 2**32 - 1]), st.integers(0, 2**32 - 1))
    if kind in (
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SFIXED32,
    ):
        return st.one_of(st.sampled_from(INT32_EDGES), st.integers(-(2**31), 2**31 - 1))
    return st.one_of(
        st.sampled_from(INT64_EDGES), st.integers(0, 60), st.integers(-(2**63), 2**63 - 1)
    )


_SIMPLE: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_STRING: st.one_of(st.sampled_from(STRING_EDGES), TEXT, LONG_TEXT),
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=64),
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_DOUBLE: st.floats(width=32),
    FieldDescriptor.TYPE_FLOAT: st.floats(width=32),
}


def _scalar(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in _SIMPLE:
        return _SIMPLE[kind]
    if field.enum_type is not None:
        numbers = [value.number for value in field.enum_type.values]
        return st.sampled_from([*numbers, max(numbers) + 1, 999])
    if field.message_type is not None:
        return messages(field.message_type, depth + 1)
    return _integers(field)


def _field(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.is_repeated:
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            key = _scalar(entry.fields_by_name["key"], depth)
            value = _scalar(entry.fields_by_name["value"], depth)
            return st.dictionaries(key, value, max_size=3)
        return st.lists(_scalar(field, depth), max_size=4)
    return _scalar(field, depth)


def messages(message_descriptor: descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    """Instances of the message: each field left unset or given a drawn value;
    at most one field of each oneof."""
    cls = message_factory.GetMessageClass(message_descriptor)
    if depth > 2:
        return st.just(cls())
    plain = {
        field.name: _field(field, depth)
        for field in message_descriptor.fields
        if field.containing_oneof is None
    }
    oneofs = [
        st.one_of(
            st.just({}),
            *(
                _field(field, depth).map(functools.partial(_named, field.name))
                for field in oneof.fields
            ),
        )
        for oneof in message_descriptor.oneofs
    ]

    def build(parts: tuple[dict[str, Any], list[dict[str, Any]]]) -> Message:
        values, chosen = parts
        built = cls()
        for name, value in [*values.items(), *(item for part in chosen for item in part.items())]:
            _assign(built, message_descriptor.fields_by_name[name], value)
        return built

    return st.tuples(st.fixed_dictionaries({}, optional=plain), st.tuples(*oneofs)).map(
        lambda parts: build((parts[0], list(parts[1])))
    )


def _named(name: str, value: Any) -> dict[str, Any]:
    return {name: value}


def _assign(target: Message, field: FieldDescriptor, value: Any) -> None:
    if field.is_repeated:
        container = getattr(target, field.name)
        if isinstance(value, dict):
            entry = field.message_type
            for key, item in value.items():
                if entry is not None and entry.fields_by_name["value"].message_type is not None:
                    container[key].CopyFrom(item)
                else:
                    container[key] = item
        elif field.message_type is not None:
            for item in value:
                container.add().CopyFrom(item)
        else:
            container.extend(value)
    elif field.message_type is not None:
        getattr(target, field.name).CopyFrom(value)
    else:
        setattr(target, field.name, value)


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(STRING_EDGES),
    TEXT,
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(TEXT, children, max_size=4)
    ),
    max_leaves=12,
)


def json_bodies(message_descriptor: descriptor.Descriptor) -> st.SearchStrategy[Any]:
    """JSON objects using the message's field names with any JSON values, or any JSON."""
    fields = {field.name: JSON_VALUES for field in message_descriptor.fields}
    return st.one_of(st.fixed_dictionaries({}, optional=fields), JSON_VALUES)
