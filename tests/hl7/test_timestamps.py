"""HL7 timestamps and durations: precision, offsets, the zone of the sender, and malformed input."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from radsched_engine.hl7.timestamps import (
    TimestampError,
    is_timestamp,
    parse_date,
    parse_duration,
    parse_ts,
    unit_seconds,
)

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(("text", "expected"), [
    ("2004", datetime(2004, 1, 1, tzinfo=BERLIN)),
    ("200403", datetime(2004, 3, 1, tzinfo=BERLIN)),
    ("20040322", datetime(2004, 3, 22, tzinfo=BERLIN)),
    ("2004032215", datetime(2004, 3, 22, 15, tzinfo=BERLIN)),
    ("200403221540", datetime(2004, 3, 22, 15, 40, tzinfo=BERLIN)),
    ("20040322154012", datetime(2004, 3, 22, 15, 40, 12, tzinfo=BERLIN)),
    ("20040322154012.5", datetime(2004, 3, 22, 15, 40, 12, 500000, tzinfo=BERLIN)),
    ("20040322154012.1234", datetime(2004, 3, 22, 15, 40, 12, 123400, tzinfo=BERLIN)),
    ("20150601145823+0100", datetime(2015, 6, 1, 14, 58, 23, tzinfo=timezone(timedelta(hours=1)))),
    ("20060529090131-0500", datetime(2006, 5, 29, 9, 1, 31, tzinfo=timezone(timedelta(hours=-5)))),
    ("201411201231 ", datetime(2014, 11, 20, 12, 31, tzinfo=BERLIN)),     # trailing space (corepoint)
])
def test_parse_ts(text: str, expected: datetime) -> None:
    value = parse_ts(text, BERLIN)
    assert value == expected and value.tzinfo is not None
    assert value.utcoffset() == expected.utcoffset()
    assert is_timestamp(text)


def test_no_offset_means_the_senders_zone() -> None:
    summer = parse_ts("20250701120000", BERLIN)
    assert summer is not None and summer.astimezone(UTC).hour == 10
    winter = parse_ts("20250101120000", BERLIN)
    assert winter is not None and winter.astimezone(UTC).hour == 11


@pytest.mark.parametrize("text", ["", "  ", '""'])
def test_empty_is_none(text: str) -> None:
    assert parse_ts(text, UTC) is None and is_timestamp(text)


@pytest.mark.parametrize("text", [
    "Aug 15, 1942", "196203520", "19500131T143414", "20120920230252907", "2014-11-20",
    "20251301", "20250230", "20250101246000", "20250101120000+2500", "20250101+01", "0000",
    "2025010112000", "20250101120000.12345", "x", "20250101 1200",
])
def test_malformed(text: str) -> None:
    with pytest.raises(TimestampError):
        parse_ts(text, UTC)
    assert not is_timestamp(text)


@given(st.text(alphabet="0123456789+-. T", max_size=24))
def test_is_timestamp_agrees_with_parse_ts(text: str) -> None:
    try:
        parse_ts(text, UTC)
        ok = True
    except TimestampError:
        ok = False
    assert is_timestamp(text) is ok


def test_parse_date() -> None:
    assert parse_date("19700101") == date(1970, 1, 1)
    assert parse_date("197001011230") == date(1970, 1, 1)
    assert parse_date("") is None
    with pytest.raises(TimestampError):
        parse_date("Aug 15, 1942")


@pytest.mark.parametrize(("value", "units", "expected"), [
    ("30", "min", timedelta(minutes=30)),
    ("30", "", timedelta(minutes=30)),
    ("10", "minutes", timedelta(minutes=10)),
    ("379", "MIN", timedelta(minutes=379)),
    ("3600.000", "s", timedelta(hours=1)),
    ("1.5", "h", timedelta(minutes=90)),
    ("M30", "", timedelta(minutes=30)),
    ("H1", "", timedelta(hours=1)),
    ("S3600", "", timedelta(hours=1)),
    ("D1", "", timedelta(days=1)),
    ("0.000", "s", timedelta(0)),
    ("", "min", None),
    ("INDEF", "", None),
])
def test_parse_duration(value: str, units: str, expected: timedelta | None) -> None:
    assert parse_duration(value, units) == expected


@pytest.mark.parametrize(("value", "units"), [
    ("abc", "min"), ("30", "fortnights"), ("-5", "min"), ("9" * 400, "s"), ("400", "d"), ("X30", ""),
])
def test_bad_durations(value: str, units: str) -> None:
    with pytest.raises(TimestampError):
        parse_duration(value, units)


def test_unit_seconds() -> None:
    assert unit_seconds("MINUTES") == 60 and unit_seconds("Sec.") == 1 and unit_seconds("") is None
