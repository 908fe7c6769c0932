"""Reading HL7 values the way the domain wants them: trimmed text, nulls, names, codes, times, warnings."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

from ..errors import Location, Problem, Reject
from ..hl7.message import Segment
from ..hl7.timestamps import TimestampError, parse_duration, parse_ts, unit_seconds
from .model import NULL


class Notes:
    """Non-fatal findings while extracting (HL7 ERR severity W); their text never holds data values."""

    __slots__ = ("problems", "times")

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.times: dict[str, datetime | None] = {}    # parsed timestamps of this message

    def add(self, code: int, text: str, location: Location | None = None) -> None:
        self.problems.append(Problem(code, text, location, "W"))

    @property
    def texts(self) -> tuple[str, ...]:
        if not self.problems:
            return ()
        return tuple(f"{p.location}: {p.text}" if p.location else p.text for p in self.problems)


def where(seg: Segment, field: int, component: int | None = None, sequence: int = 1) -> Location:
    return Location(seg.id, sequence, field, 1, component)


def text(value: str) -> str:
    """Trimmed text; an explicit HL7 null ``""`` becomes ``model.NULL``."""
    value = value.strip()
    return NULL if value == '""' else value


def ident(value: str) -> str | None:
    """A trimmed identifier, or None when empty or sent as ``""`` (an id cannot be cleared)."""
    value = value.strip()
    return value if value and value != '""' else None


def components(seg: Segment, field: int, repetition: int = 1) -> list[str]:
    """Leaf text of every component of one field repetition: item ``c - 1`` is exactly
    ``seg.get(field, c, 1, repetition)``, read with one split instead of one lookup per component
    ([] when the field is empty). Use ``nth`` to index it."""
    value = seg.field(field)
    if not value:
        return []
    d = seg.delimiters
    if d.repetition and d.repetition in value:
        parts = value.split(d.repetition)
        value = parts[repetition - 1] if repetition <= len(parts) else ""
    elif repetition != 1:
        return []
    comps = value.split(d.component) if d.component and d.component in value else [value]
    sub, esc = d.subcomponent, d.escape
    for i, comp in enumerate(comps):
        if sub and sub in comp:
            comp = comps[i] = comp.split(sub, 1)[0]
        if esc and esc in comp:
            comps[i] = seg.get(field, i + 1, 1, repetition)    # escape sequences: the exact reader
    return comps


def nth(comps: list[str], component: int) -> str:
    """Component ``component`` (1-based) of ``components(...)``; "" when absent."""
    return comps[component - 1] if component <= len(comps) else ""


def coded_text(seg: Segment, field: int, repetition: int = 1) -> str:
    """The human text of a CE/CWE field: its text component, else its code."""
    return text(seg.get(field, 2, 1, repetition) or seg.get(field, 1, 1, repetition))


def code(seg: Segment, field: int) -> str:
    """Component 1 of a coded field, trimmed and upper-cased."""
    return seg.get(field).strip().upper()


def person_name(seg: Segment, field: int, repetition: int = 1) -> str:
    """Display form of an XCN (``prefix given family``), or its id when no name is given."""
    comps = components(seg, field, repetition)
    parts = [nth(comps, c).strip() for c in (6, 3, 2)]
    name = " ".join(p for p in parts if p and p != '""')
    return name or ident(nth(comps, 1)) or ""


_PRIORITY = {
    "S": "S", "STAT": "S", "A": "A", "ASAP": "A", "R": "R", "ROUTINE": "R", "P": "P",
    "PREOP": "P", "PRE-OP": "P", "T": "T", "TIMING": "T", "TIMING CRITICAL": "T", "C": "R",
    "CALLBACK": "R",
}


def priority(*values: str) -> str:
    """The first non-empty priority as table 0027 S/A/R/P/T (``TS…``/``TM…`` → T, unknown → R)."""
    for value in values:
        value = value.strip().upper()
        if not value or value == '""':
            continue
        found = _PRIORITY.get(value)
        if found is None:
            found = "T" if value[:2] in ("TS", "TM") else "R"
        return found
    return "R"


def timestamp(seg: Segment, field: int, component: int, tz: tzinfo, notes: Notes, label: str,
              *, fatal: bool = False, sequence: int = 1) -> datetime | None:
    """An aware datetime; a malformed value is AE 102 when ``fatal``, else None plus a warning."""
    value = seg.get(field, component)
    if not value:
        return None
    if value in notes.times:
        return notes.times[value]
    try:
        result = notes.times[value] = parse_ts(value, tz)
        return result
    except TimestampError:
        loc = Location(seg.id, sequence, field, 1, component if component > 1 else None)
        if fatal:
            raise Reject(102, f"{label} ({loc}) is not a valid HL7 date/time", loc,
                         user_text=f"The {label} is not a valid date/time.") from None
        notes.add(102, f"{label} is not a valid date/time; ignored", loc)
        return None


def duration(seg: Segment, field: int, component: int, units: str, notes: Notes, label: str,
             *, fatal: bool = False, sequence: int = 1) -> timedelta | None:
    """A duration from a value at ``field.component`` and its unit text (coded TQ values allowed).

    An unknown unit only warns; a non-numeric value is AE 102 when ``fatal``, else a warning.
    """
    value = seg.get(field, component)
    if not value.strip():
        return None
    if units.strip() and unit_seconds(units) is None:
        notes.add(102, f"{label} has an unknown duration unit; ignored",
                  Location(seg.id, sequence, field, 1, component if component > 1 else None))
        return None
    try:
        return parse_duration(value, units)
    except TimestampError:
        loc = Location(seg.id, sequence, field, 1, component if component > 1 else None)
        if fatal:
            raise Reject(102, f"{label} ({loc}) is not a valid duration", loc) from None
        notes.add(102, f"{label} is not a valid duration; ignored", loc)
        return None
