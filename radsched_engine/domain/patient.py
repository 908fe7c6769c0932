"""The patient of a message (PID): chosen identifier, name, birth date, sex and phone numbers."""

from __future__ import annotations

from ..errors import Location
from ..hl7.message import Message, Segment
from ..hl7.timestamps import TimestampError
from .model import Patient, Phone
from .read import Reader, birth_date
from .values import Notes, components, ident, nth, text


def _field(fields: list[str], n: int) -> str:
    return fields[n] if n < len(fields) else ""


def _identifier(r: Reader, pid: list[str], prefer_types: tuple[str, ...]) -> tuple[str, str]:
    """``(id, authority)`` from PID-3: the first repetition of a preferred type, else the first one."""
    first: tuple[str, str] | None = None
    for rep in r.reps(_field(pid, 3)):
        cx = r.split(rep)
        value = ident(cx[0])
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
        raw = _field(pid, field)
        value = ident(r.leaf(raw))
        if value is not None:
            return value, r.leaf(raw, 4).strip()
    return "", ""


def _digits(text: str) -> str:
    return text if text.isdigit() else "".join(ch for ch in text if ch.isdigit())


def _number(xtn: list[str]) -> str:
    """XTN.1, else XTN.12 (unformatted), else ``+country area local`` from XTN.5-7 (+ ``x ext``)."""
    number = xtn[0].strip() or nth(xtn, 12).strip()
    if number:
        return "" if number == '""' else number
    country, area, local, ext = (_digits(nth(xtn, c)) for c in (5, 6, 7, 8))
    if not local:
        return ""
    number = (f"+{country}" if country else "") + area + local
    return f"{number} x{ext}" if ext else number


def _phones(r: Reader, value: str, default_use: str) -> list[Phone]:
    found: list[Phone] = []
    for rep in r.reps(value):
        xtn = r.split(rep)
        number = _number(xtn)
        if not number:
            continue
        use = nth(xtn, 2).strip().upper() or default_use
        found.append(Phone(number, use, nth(xtn, 3).strip()))
    return found


def phones(pid: Segment, field: int, default_use: str) -> tuple[Phone, ...]:
    """Every repetition of an XTN field that carries a telephone number (e-mail-only ones skipped)."""
    found: list[Phone] = []
    for rep in range(1, len(pid.repetitions(field)) + 1):
        xtn = components(pid, field, rep)
        number = _number(xtn) if xtn else ""
        if not number:
            continue
        use = nth(xtn, 2).strip().upper() or default_use
        found.append(Phone(number, use, nth(xtn, 3).strip()))
    return tuple(found)


def patient_from(message: Message, notes: Notes, prefer_types: tuple[str, ...] = ("MR",),
                 reader: Reader | None = None) -> Patient | None:
    """The patient from the first PID, or None when there is none."""
    seg = message.segment("PID")
    if seg is None:
        return None
    r = reader or Reader(message, notes=notes)
    pid = seg.fields
    mrn, authority = _identifier(r, pid, prefer_types)
    birth = None
    try:
        birth = birth_date(r.leaf(_field(pid, 7)))
    except TimestampError:
        notes.add(102, "birth date is not a valid date; stored as unknown", Location("PID", 1, 7))
    name = r.comps(_field(pid, 5))
    found = _phones(r, _field(pid, 13), "PRN")
    found += _phones(r, _field(pid, 14), "WPN")
    return Patient(
        mrn=mrn,
        authority=authority,
        family_name=text(nth(name, 1)),
        given_name=text(nth(name, 2)),
        birth_date=birth,
        sex=text(r.leaf(_field(pid, 8))),
        phones=tuple(found),
    )
