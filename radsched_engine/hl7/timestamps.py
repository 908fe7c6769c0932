"""HL7 TS/DTM timestamps and durations: text to aware datetimes and timedeltas, strict on bad input."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo

# YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]
_TS = re.compile(
    r"(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,4}))?)?)?)?)?)?"
    r"(?:([+-])(\d{2})(\d{2}))?")
_OFFSETS: dict[str, timezone] = {}


class TimestampError(ValueError):
    """A value that should be an HL7 timestamp (or duration) is not one."""


def _offset(sign: str, hours: str, minutes: str) -> timezone:
    key = sign + hours + minutes
    zone = _OFFSETS.get(key)
    if zone is None:
        h, m = int(hours), int(minutes)
        if h > 14 or m > 59:
            raise TimestampError("time zone offset out of range")
        delta = timedelta(hours=h, minutes=m)
        zone = timezone(-delta if sign == "-" else delta)
        if len(_OFFSETS) < 256:
            _OFFSETS[key] = zone
    return zone


def parse_ts(text: str, tz: tzinfo) -> datetime | None:
    """An aware datetime from an HL7 TS/DTM value; None when empty (or an explicit ``""`` null).

    Precision may stop at any of year, month, day, hour, minute, second or fraction; missing
    parts take their lowest value. An offset ``+hhmm``/``-hhmm`` is honoured; without one the
    value is local time in ``tz``. Surrounding spaces are ignored. Raises ``TimestampError`` for
    anything else (``Aug 15, 1942``, ``19500131T143414``, month 13, a 17-digit run ...).
    """
    text = text.strip()
    if not text or text == '""':
        return None
    m = _TS.fullmatch(text)
    if m is None:
        raise TimestampError("not an HL7 timestamp (expected YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ])")
    year, month, day, hour, minute, second, frac, sign, oh, om = m.groups()
    zone = _offset(sign, oh, om) if sign else tz
    micro = int(frac.ljust(6, "0")) if frac else 0
    try:
        return datetime(int(year), int(month or 1), int(day or 1), int(hour or 0),
                        int(minute or 0), int(second or 0), micro, tzinfo=zone)
    except ValueError:
        raise TimestampError("timestamp has an out-of-range date or time part") from None


def parse_date(text: str) -> date | None:
    """The calendar date of an HL7 DT/TS value (birth dates); None when empty; raises when malformed."""
    value = parse_ts(text, UTC)
    return value.date() if value is not None else None


# The same grammar with the ranges built in, for a cheap validity check (no datetime is built).
_TS_VALID = re.compile(
    r"(?!0000)\d{4}(?:(?:0[1-9]|1[0-2])(?:(0[1-9]|[12]\d|3[01])(?:(?:[01]\d|2[0-3])(?:[0-5]\d(?:[0-5]\d"
    r"(?:\.\d{1,4})?)?)?)?)?)?(?:[+-](?:0\d|1[0-4])[0-5]\d)?")


def is_timestamp(text: str) -> bool:
    """True when ``text`` is empty or a well-formed HL7 timestamp (same rules as ``parse_ts``)."""
    m = _TS_VALID.fullmatch(text)
    if m is None:
        text = text.strip()
        if not text or text == '""':
            return True
        m = _TS_VALID.fullmatch(text)
        if m is None:
            return False
    day = m.group(1)
    if day is None or day < "29":
        return True
    try:                                  # the 29th-31st: does the month have that day?
        parse_ts(text, UTC)
    except TimestampError:
        return False
    return True


# Duration units, normalised: lower-case, without spaces and dots.
_UNIT_SECONDS: dict[str, float] = {}
for _names, _secs in (
    (("s", "sec", "secs", "second", "seconds", "seg", "segundos"), 1),
    (("m", "mi", "mn", "min", "mins", "minute", "minutes", "minuto", "minutos", "minuten"), 60),
    (("h", "hr", "hrs", "hour", "hours", "hora", "horas"), 3600),
    (("d", "day", "days", "dia", "dias"), 86400),
    (("w", "wk", "wks", "week", "weeks"), 604800),
):
    for _n in _names:
        _UNIT_SECONDS[_n] = _secs
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_CODED = re.compile(r"([SMHDW])(\d+(?:\.\d*)?)")
_MAX_SECONDS = 366 * 86400


def unit_seconds(units: str) -> float | None:
    """Seconds per unit for a duration unit code (``m``, ``min``, ``MINUTES``, ``s``, ``h`` ...)."""
    key = units.strip().lower().replace(" ", "").replace(".", "")
    return _UNIT_SECONDS.get(key) if key else None


def parse_duration(value: str, units: str = "", default_units: str = "min") -> timedelta | None:
    """A duration from a number and a unit, or from TQ-style code (``M30``, ``H1``, ``S3600``).

    ``value`` empty (or ``""``/``INDEF``) → None. A bare number takes ``units`` (empty units →
    ``default_units``). Raises ``TimestampError`` for a non-numeric value, an unknown unit or a
    negative or absurd (over a year) duration.
    """
    text = value.strip()
    if not text or text == '""' or text.upper() == "INDEF":
        return None
    if _NUMBER.fullmatch(text):
        per = unit_seconds(units or default_units)
        if per is None:
            raise TimestampError("unknown duration unit")
        seconds = float(text) * per
    else:
        m = _CODED.fullmatch(text.upper())
        if m is None:
            raise TimestampError("duration is not a number")
        per = unit_seconds(m.group(1))
        assert per is not None
        seconds = float(m.group(2)) * per
    if not seconds <= _MAX_SECONDS:
        raise TimestampError("duration longer than a year")
    return timedelta(seconds=seconds)
