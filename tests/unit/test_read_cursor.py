"""The read model's page cursors: a cursor the API did not hand out is refused with the
cursor's own message (a 422 naming it), whatever it holds - also a time at either end of the
calendar whose offset moves it past year 1 or 9999 in UTC."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from registry_core.domain.errors import InvalidQuery
from registry_core.persistence.read import BY_PRECEDENCE, BY_TIME, _decode_cursor, _encode_cursor


def _time_cursor(stamp: str, offset: int = 0) -> str:
    return base64.urlsafe_b64encode(json.dumps(["t", [stamp, offset]]).encode()).decode()


@pytest.mark.parametrize(
    "stamp",
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+00:01",
     "9999-12-31T23:59:59.999999-00:01", "not a time"],
)  # fmt: skip
def test_a_time_cursor_past_the_calendar_in_utc_is_not_valid(stamp: str) -> None:
    with pytest.raises(InvalidQuery, match="the cursor is not valid for this query"):
        _decode_cursor(_time_cursor(stamp), BY_TIME)


@pytest.mark.parametrize(
    "stamp", ["0001-01-01T00:00:00-14:00", "9999-12-31T23:59:59+14:00", "2026-05-01T12:00:00Z"]
)
def test_a_time_cursor_inside_the_calendar_is_read_in_utc(stamp: str) -> None:
    got = _decode_cursor(_time_cursor(stamp, 7), BY_TIME)
    assert got == [datetime.fromisoformat(stamp), 7]
    assert got[0].tzinfo is UTC


def test_a_cursor_handed_out_reads_back() -> None:
    row = {"created_at": datetime(2026, 5, 1, 12, tzinfo=UTC), "event_offset": 3}
    assert _decode_cursor(_encode_cursor(BY_TIME, row), BY_TIME) == [row["created_at"], 3]
    row = {"major": 1, "minor": 2, "patch": 3, "pre_key": "~", "event_offset": 9}
    assert _decode_cursor(_encode_cursor(BY_PRECEDENCE, row), BY_PRECEDENCE) == [1, 2, 3, "~", 9]
    with pytest.raises(InvalidQuery, match="same sort order"):
        _decode_cursor(_encode_cursor(BY_PRECEDENCE, row), BY_TIME)
