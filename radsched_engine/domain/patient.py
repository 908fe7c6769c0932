"""The patient of a message (PID): chosen identifier, name, birth date, sex and phone numbers."""

from __future__ import annotations

from ..errors import Location
from ..hl7.message import Message
from ..hl7.timestamps import TimestampError
from .model import Patient, Phone
from .read import Reader, birth_date, pad
from .values import Notes, ident, nth, text


def _identifier(r: Reader, pid: list[str], prefer_types: tuple[str, ...]) -> tuple[str, str]:
    """``(id, authority)`` from PID-3: the first repetition of a preferred type, else the first one."""
    first: tuple[str, str] | None = None
    for rep in r.reps(pid[3]):
        cx = r.split(rep)
        value = ident(cx[0])
        if value is None:
            continue
        n = len(cx)
        found = (value, cx[3].strip() if n > 3 else "")
        if (cx[4] if n > 4 else "").strip().upper() in prefer_types:
            return found
        if first is None:
            first = found
    if first is not None:
        return first
    for field in (2, 4):            # backward-compatible patient ids, still the only one for some
        value = ident(r.leaf(pid[field]))
        if value is not None:
            return value, r.leaf(pid[field], 4).strip()
    return "", ""


def _digits(text: str) -> str:
    return text if text.isdigit() or not text else "".join(ch for ch in text if ch.isdigit())


def _number(xtn: list[str]) -> str:
    """XTN.1, else XTN.12 (unformatted), else ``+country area local`` from XTN.5-7 (+ ``x ext``)."""
    number = nth(xtn, 1).strip() or nth(xtn, 12).strip()
    if number:
        return "" if number == '""' else number
    local = _digits(nth(xtn, 7))
    if not local:
        return ""
    country, area, ext = _digits(nth(xtn, 5)), _digits(nth(xtn, 6)), _digits(nth(xtn, 8))
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


def patient_from(message: Message, notes: Notes, prefer_types: tuple[str, ...] = ("MR",),
                 reader: Reader | None = None) -> Patient | None:
    """The patient from the first PID, or None when there is none."""
    rows = message.split_fields("PID")
    if not rows:
        return None
    r = reader or Reader(message, notes=notes)
    pid = pad(rows[0], 15)
    mrn, authority = _identifier(r, pid, prefer_types)
    birth = None
    try:
        birth = birth_date(r.leaf(pid[7]))
    except TimestampError:
        notes.add(102, "birth date is not a valid date; stored as unknown", Location("PID", 1, 7))
    name = r.comps(pid[5])
    found = _phones(r, pid[13], "PRN") if pid[13] else []
    if pid[14]:
        found += _phones(r, pid[14], "WPN")
    return Patient(mrn, authority, text(nth(name, 1)), text(nth(name, 2)), birth, text(r.leaf(pid[8])),
                   tuple(found))
