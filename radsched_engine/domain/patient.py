"""The patient of a message (PID): chosen identifier, name, birth date, sex and phone numbers."""

from __future__ import annotations

from ..errors import Location
from ..hl7.message import Message, Segment
from ..hl7.timestamps import TimestampError, parse_date
from .model import Patient, Phone
from .values import Notes, ident, text


def _identifier(pid: Segment, prefer_types: tuple[str, ...]) -> tuple[str, str]:
    """``(id, authority)`` from PID-3: the first repetition of a preferred type, else the first one."""
    count = len(pid.repetitions(3))
    first: tuple[str, str] | None = None
    for rep in range(1, count + 1):
        value = ident(pid.get(3, 1, 1, rep))
        if value is None:
            continue
        found = (value, pid.get(3, 4, 1, rep).strip())
        if pid.get(3, 5, 1, rep).strip().upper() in prefer_types:
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


def _number(pid: Segment, field: int, rep: int) -> str:
    """XTN.1, else XTN.12 (unformatted), else ``+country area local`` from XTN.5-7 (+ ``x ext``)."""
    number = pid.get(field, 1, 1, rep).strip() or pid.get(field, 12, 1, rep).strip()
    if number:
        return "" if number == '""' else number
    country, area, local, ext = (
        "".join(ch for ch in pid.get(field, c, 1, rep) if ch.isdigit()) for c in (5, 6, 7, 8))
    if not local:
        return ""
    number = (f"+{country}" if country else "") + area + local
    return f"{number} x{ext}" if ext else number


def phones(pid: Segment, field: int, default_use: str) -> tuple[Phone, ...]:
    """Every repetition of an XTN field that carries a telephone number (e-mail-only ones skipped)."""
    found: list[Phone] = []
    for rep in range(1, len(pid.repetitions(field)) + 1):
        number = _number(pid, field, rep)
        if not number:
            continue
        use = pid.get(field, 2, 1, rep).strip().upper() or default_use
        equipment = pid.get(field, 3, 1, rep).strip()
        found.append(Phone(number, use, equipment))
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
    return Patient(
        mrn=mrn,
        authority=authority,
        family_name=text(pid.get(5, 1, 1)),
        given_name=text(pid.get(5, 2)),
        birth_date=birth,
        sex=text(pid.get(8)),
        phones=phones(pid, 13, "PRN") + phones(pid, 14, "WPN"),
    )
