"""The reader's fast paths give exactly what the general HL7 readers give, value and error alike."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, timezone, tzinfo
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from radsched_engine.domain.read import Reader, _slow_ts, birth_date, fast_ts, unit
from radsched_engine.domain.values import Notes
from radsched_engine.hl7.message import Message
from radsched_engine.hl7.timestamps import TimestampError, parse_date, parse_duration, parse_ts, unit_seconds

ZONES = [ZoneInfo("America/New_York"), ZoneInfo("Europe/London"), UTC]
_DIGITS = st.text(alphabet="0123456789", min_size=0, max_size=16)
_OFFSET = st.sampled_from(["", "+0000", "-0000", "-0500", "+0530", "+1400", "+1500", "-1260", "+05"])
_NOISE = st.sampled_from(["", " ", ".5", "T", "٢", "x"])


def _outcome(fn: Callable[..., object], *args: object) -> str:
    try:
        value = fn(*args)
    except TimestampError:
        return "error"
    return repr(value)


@settings(max_examples=3000, deadline=None)
@given(digits=_DIGITS, offset=_OFFSET, noise=_NOISE, where=st.integers(0, 20),
       zone=st.sampled_from(ZONES))
def test_fast_timestamps_equal_parse_ts(digits: str, offset: str, noise: str, where: int,
                                        zone: tzinfo) -> None:
    text = digits + offset
    text = text[:where] + noise + text[where:]
    if offset:
        _outcome(_slow_ts, "20260101" + offset, zone)   # a valid offset becomes known to the fast path
    fast = fast_ts(text, zone)
    if fast is not None:
        assert repr(fast) == repr(parse_ts(text, zone)), text
    reader = Reader(Message.parse(b"MSH|^~\\&|A|B|C|D|20260101||SIU^S12|1|P|2.5\r"), zone, Notes())
    try:
        got = repr(reader.ts(text, "X", 1, 1, "x"))
    except Exception as exc:      # fatal=False: never raises
        raise AssertionError(text) from exc
    expected = _outcome(parse_ts, text, zone) if text else "None"
    assert got == (expected if expected != "error" else "None"), text
    assert bool(reader.notes.problems) == (expected == "error")


@settings(max_examples=1000, deadline=None)
@given(digits=_DIGITS, noise=_NOISE, where=st.integers(0, 10))
def test_birth_dates_equal_parse_date(digits: str, noise: str, where: int) -> None:
    text = digits[:where] + noise + digits[where:]
    assert _outcome(birth_date, text) == _outcome(parse_date, text)


@settings(max_examples=2000, deadline=None)
@given(value=st.sampled_from(["", " ", "30", " 30 ", "0", "1.5", "M30", "H1", "INDEF", '""', "-3",
                              "99999999", "527040", "527041", "٣٠", "3x"]),
       units=st.sampled_from(["", " ", "min", "MIN", "m", "h", "Hours", "s.", "xyz", "d", "w"]))
def test_durations_equal_parse_duration(value: str, units: str) -> None:
    reader = Reader(Message.parse(b"MSH|^~\\&|A|B|C|D|20260101||SIU^S12|1|P|2.5\r"), UTC, Notes())
    got = reader.duration(value, units, "X", 1, 1, "d")
    if not value.strip():
        assert got is None
    elif units.strip() and unit_seconds(units) is None:
        assert got is None and reader.notes.problems
    else:
        expected = _outcome(parse_duration, value, units)
        assert repr(got) == (expected if expected != "error" else "None")
        assert bool(reader.notes.problems) == (expected == "error")
    assert unit(units) == unit_seconds(units)


def test_offsets_become_the_same_zones() -> None:
    for text in ("20261215090000-0500", "20261215090000+0000", "202612150900+0530"):
        parse_ts(text, UTC)
        _slow_ts(text, UTC)
        fast = fast_ts(text, UTC)
        assert fast is not None and fast == parse_ts(text, UTC)
        assert isinstance(fast.tzinfo, timezone) and repr(fast) == repr(parse_ts(text, UTC))
