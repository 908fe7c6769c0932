"""One message's raw fields read as ``Segment.get`` reads them, split once, with fast common timestamps.

Extraction takes each segment's split field list (``Message.split_fields``: no Segment objects)
and cuts each field into its components once, instead of one ``Segment.get`` per value. Every
result equals what ``Segment.get`` and ``hl7.timestamps`` give for the same place (golden
outputs in ``tests/domain`` pin them over every sample): leaves are the first subcomponent,
unescaped only when they hold the escape character; timestamps of the forms ``YYYYMMDD``,
``YYYYMMDDHHMM`` and ``YYYYMMDDHHMMSS``, the last two with an optional ``±ZZZZ`` already accepted
once, are built directly; anything else (and every error) goes through ``hl7.timestamps``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo

from ..errors import Location, Reject
from ..hl7.escape import unescape
from ..hl7.message import Message
from ..hl7.timestamps import TimestampError, parse_date, parse_duration, parse_ts, unit_seconds
from .values import Notes, ident, text

_ABSENT = "\r"                      # a delimiter the message does not define: never inside a segment
_ZONES: dict[str, tzinfo] = {}      # "+0500" → its fixed offset, once parse_ts accepted it
_UNITS: dict[str, float | int | None] = {}   # duration unit text as sent → seconds (or unknown)
_MAX_SECONDS = 366 * 86400
_MISSING = object()
_EMPTY = [""] * 40


def pad(items: list[str], n: int) -> list[str]:
    """``items`` with at least ``n`` entries (absent ones ""): index without bounds checks."""
    return items if len(items) >= n else items + _EMPTY[:n - len(items)]


def unit(units: str) -> float | int | None:
    """``unit_seconds(units)``, remembered per spelling (a small, constant vocabulary)."""
    found = _UNITS.get(units, _MISSING)
    if found is _MISSING:
        found = unit_seconds(units)
        if len(_UNITS) < 512:
            _UNITS[units] = found
    return found  # type: ignore[return-value]


def fast_ts(text: str, tz: tzinfo) -> datetime | None:
    """The common ``YYYYMMDD[HHMM[SS]][±ZZZZ]`` forms as ``parse_ts`` reads them; None for others."""
    n = len(text)
    if not (text.isascii() and 8 <= n <= 19):
        return None
    if text[n - 5] in "+-":
        if n not in (17, 19) or text[n - 5:] not in _ZONES or not text[:n - 5].isdecimal():
            return None                  # (an offset parse_ts has not yet accepted, or a date only)
        try:                             # basic ISO 8601 with the offset parse_ts accepted
            return datetime.fromisoformat(text[:8] + "T" + text[8:])
        except ValueError:
            return None
    if not text.isdecimal():
        return None
    try:
        if n == 14:
            return datetime(int(text[:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]),
                            int(text[10:12]), int(text[12:]), 0, tz)
        if n == 12:
            return datetime(int(text[:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]),
                            int(text[10:]), 0, 0, tz)
        if n == 8:
            return datetime(int(text[:4]), int(text[4:6]), int(text[6:]), 0, 0, 0, 0, tz)
    except ValueError:
        pass                             # out of range: parse_ts says why
    return None


def _slow_ts(text: str, tz: tzinfo) -> datetime | None:
    result = parse_ts(text, tz)
    n = len(text)
    if result is not None and n in (13, 17, 19) and text[n - 5] in "+-" and len(_ZONES) < 256:
        _ZONES[text[n - 5:]] = result.tzinfo      # type: ignore[assignment]
    return result


def birth_date(text: str) -> date | None:
    """``parse_date`` (raises ``TimestampError`` alike), with the plain ``YYYYMMDD`` form built directly."""
    if len(text) == 8 and text.isascii() and text.isdecimal():
        try:
            return date(int(text[:4]), int(text[4:6]), int(text[6:]))
        except ValueError:
            pass
    return parse_date(text)


def name(comps: list[str]) -> str:
    """A person's name from an XCN's components: ``prefix given family``, else its id."""
    n = len(comps)
    if n < 2:
        return (ident(comps[0]) or "") if comps else ""
    parts = [comps[c - 1].strip() if c <= n else "" for c in (6, 3, 2)]
    found = " ".join(p for p in parts if p and p != '""')
    return found or ident(comps[0]) or ""


def _location(seg_id: str, sequence: int, field: int, component: int) -> Location:
    return Location(seg_id, sequence, field, 1, component if component > 1 else None)


class Reader:
    """The delimiters, charset, facility zone and notes of one message, for reading its raw fields."""

    __slots__ = ("charset", "comp", "delimiters", "esc", "notes", "rep", "spans", "sub", "times", "tz")

    def __init__(self, message: Message, tz: tzinfo = UTC, notes: Notes | None = None) -> None:
        d = self.delimiters = message.delimiters
        self.charset = message.charset
        self.rep = d.repetition or _ABSENT
        self.comp = d.component or _ABSENT
        self.sub = d.subcomponent or _ABSENT
        self.esc = d.escape or _ABSENT
        self.tz = tz
        self.notes = notes if notes is not None else Notes()
        self.times = self.notes.times
        self.spans: dict[tuple[str, str], timedelta] = {}     # valid durations read so far

    # -- values ------------------------------------------------------------------------------------
    def leaf(self, value: str, component: int = 1) -> str:
        """``seg.get(n, component)`` of a raw field value (first repetition and subcomponent)."""
        if component == 1:           # the first of everything: the text before any delimiter
            if value.isalnum() or not value:      # (delimiters are never letters or digits)
                return value
            if self.comp in value:
                value = value.split(self.comp, 1)[0]
            if self.rep in value:
                value = value.split(self.rep, 1)[0]
        else:
            if self.rep in value:
                value = value.split(self.rep, 1)[0]
            if self.comp not in value:
                return ""
            parts = value.split(self.comp)
            if component > len(parts):
                return ""
            value = parts[component - 1]
        if self.sub in value:
            value = value.split(self.sub, 1)[0]
        if self.esc in value:
            return unescape(value, self.delimiters, self.charset)
        return value

    def comps(self, value: str) -> list[str]:
        """Leaf text of every component of the first repetition."""
        if not value:
            return []
        if value.isalnum():
            return [value]
        if self.rep in value:
            value = value.split(self.rep, 1)[0]
        return self.split(value)

    def split(self, value: str) -> list[str]:
        """Leaf text of every component of one repetition's raw text."""
        comps = value.split(self.comp) if self.comp in value else [value]
        sub, esc = self.sub, self.esc
        if sub in value or esc in value:
            for i, comp in enumerate(comps):
                if sub in comp:
                    comp = comps[i] = comp.split(sub, 1)[0]
                if esc in comp:
                    comps[i] = unescape(comp, self.delimiters, self.charset)
        return comps

    def coded_text(self, value: str) -> str:
        """A raw CE/CWE field value's text component, else its code."""
        if not value:
            return ""
        comps = self.comps(value)
        return text((comps[1] if len(comps) > 1 else "") or comps[0])

    def reps(self, value: str) -> list[str]:
        """Raw repetitions of a field value ([] when empty)."""
        if not value:
            return []
        return value.split(self.rep) if self.rep in value else [value]

    # -- times -------------------------------------------------------------------------------------
    def ts(self, value: str, seg_id: str, field: int, component: int, label: str, *,
           fatal: bool = False, sequence: int = 1) -> datetime | None:
        """An unescaped leaf value as a date/time (``parse_ts``; the common forms built directly):
        an invalid one is AE 102 when ``fatal``, else a warning and None."""
        if not value:
            return None
        found = self.times.get(value, _MISSING)
        if found is not _MISSING:
            return found  # type: ignore[return-value]
        result = fast_ts(value, self.tz)
        if result is None:
            try:
                result = _slow_ts(value, self.tz)
            except TimestampError:
                loc = _location(seg_id, sequence, field, component)
                if fatal:
                    raise Reject(102, f"{label} ({loc}) is not a valid HL7 date/time", loc,
                                 user_text=f"The {label} is not a valid date/time.") from None
                self.notes.add(102, f"{label} is not a valid date/time; ignored", loc)
                return None
        self.times[value] = result
        return result

    def duration(self, value: str, units: str, seg_id: str, field: int, component: int, label: str,
                 *, fatal: bool = False, sequence: int = 1) -> timedelta | None:
        """An unescaped leaf value and its unit text as a duration (``parse_duration``; whole
        numbers of a known unit built directly): an invalid one is AE 102 when ``fatal``, else a
        warning and None."""
        found = self.spans.get((value, units))
        if found is not None:                           # (read before in this message, and valid)
            return found
        text = value.strip()
        if not text:
            return None
        if units:
            per = unit(units)
            if per is None and units.strip():
                self.notes.add(102, f"{label} has an unknown duration unit; ignored",
                               _location(seg_id, sequence, field, component))
                return None
        else:
            per = 60                                    # parse_duration's default unit: minutes
        if per is not None and text.isascii() and text.isdigit():
            seconds = float(text) * per  # type: ignore[operator]
            if seconds <= _MAX_SECONDS:
                found = self.spans[(value, units)] = timedelta(seconds=seconds)
                return found
        try:
            return parse_duration(value, units)
        except TimestampError:
            loc = _location(seg_id, sequence, field, component)
            if fatal:
                raise Reject(102, f"{label} ({loc}) is not a valid duration", loc) from None
            self.notes.add(102, f"{label} is not a valid duration; ignored", loc)
            return None
