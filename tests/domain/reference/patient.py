"""The patient of a message (PID): chosen identifier, name, birth date, sex and phone numbers."""

from __future__ import annotations

from radsched_engine.domain.model import Patient, Phone
from radsched_engine.errors import Location
from radsched_engine.hl7.message import Message, Segment
from radsched_engine.hl7.timestamps import TimestampError, parse_date

from .values import Notes, components, ident, nth, text


def _identifier(pid: Segment, prefer_types: tuple[str, ...]) -> tuple[str, str]:
    """``(id, authority)`` from PID-3: the first repetition of a preferred type, else the first one."""
    count = len(pid.repetitions(3))
    first: tuple[str, str] | None = None
    for rep in range(1, count + 1):
        cx = components(pid, 3, rep)
        value = ident(nth(cx, 1))
        if value is None:
            continue
        found = (value, nth(cx, 4).strip())
        if nth(cx, 5).strip().upper() in prefer_types:
            return found
        if first is None:
            first = found
    if first is not None:
        return first
    for field in (2, 4):            # backward-compatible patient ids, still the only one for some
        value = ident(pid.get(field))
        if value is not None:
            return value, pid.get(field, 4).strip()
    return "", ""


def _digits(text: str) -> str:
    return text if text.isdigit() else "".join(ch for ch in text if ch.isdigit())


def _number(xtn: list[str]) -> str:
    """XTN.1, else XTN.12 (unformatted), else ``+country area local`` from XTN.5-7 (+ ``x ext``)."""
    number = nth(xtn, 1).strip() or nth(xtn, 12).strip()
    if number:
        return "" if number == '""' else number
    country, area, local, ext = (_digits(nth(xtn, c)) for c in (5, 6, 7, 8))
    if not local:
        return ""
    number = (f"+{country}" if country else "") + area + local
    return f"{number} x{ext}" if ext else number


def phones(pid: Segment, field: int, default_use: str) -> tuple[Phone, ...]:
    """Every repetition of an XTN field that carries a telephone number (e-mail-only ones skipped)."""
    found: list[Phone] = []
    for rep in range(1, len(pid.repetitions(field)) + 1):
        xtn = components(pid, field, rep)
        number = _number(xtn)
        if not number:
            continue
        use = nth(xtn, 2).strip().upper() or default_use
        found.append(Phone(number, use, nth(xtn, 3).strip()))
    return tuple(found)


def patient_from(message: Message, notes: Notes,
                 prefer_types: tuple[str, ...] = ("MR",)) -> Patient | None:
    """The patient from the first PID, or None when there is none."""
    pid = message.segment("PID")
    if pid is None:
        return None
    mrn, authority = _identifier(pid, prefer_types)
    birth = None
    try:
        birth = parse_date(pid.get(7))
    except TimestampError:
        notes.add(102, "birth date is not a valid date; stored as unknown", Location("PID", 1, 7))
    name = components(pid, 5)
    return Patient(
        mrn=mrn,
        authority=authority,
        family_name=text(nth(name, 1)),
        given_name=text(nth(name, 2)),
        birth_date=birth,
        sex=text(pid.get(8)),
        phones=phones(pid, 13, "PRN") + phones(pid, 14, "WPN"),
    )
