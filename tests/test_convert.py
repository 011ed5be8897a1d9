"""Domain values to protobuf: timestamps as protobuf's own conversion makes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from atomchat_server.api.convert import timestamp


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 12, 4, 18, 30, 5, 123456, tzinfo=UTC),
        datetime(2026, 12, 4, 21, 30, 5, 999999, tzinfo=timezone(timedelta(hours=3))),
        datetime(2020, 2, 29, 23, 59, 59),
        datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
        datetime(1900, 1, 1, tzinfo=timezone(timedelta(hours=-5))),
        datetime(1970, 1, 1, tzinfo=UTC),
    ],
)
def test_a_timestamp_is_the_one_protobuf_makes(moment: datetime) -> None:
    expected = Timestamp()
    expected.FromDatetime(moment)
    assert timestamp(moment) == expected


def test_no_moment_is_no_timestamp() -> None:
    assert timestamp(None) is None
