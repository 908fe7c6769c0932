"""The de-identified analysis context: a booking and its neighbours with no direct patient identifiers.

Built from an allow-list, never by deleting fields: age band and sex for the patient; relative
times; procedures, modalities, scanner/room ids, staff roles and the rule findings. Names, MRNs,
phones, addresses, birth dates, appointment ids and staff ids never leave; appointments and staff
get aliases (``A0`` is the booking under review) that only the caller can map back. As a last
guard, every string sent is scrubbed of the patient's known identifiers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from ..domain.model import Patient

SEXES = frozenset({"F", "M", "O", "U", "A", "N", "X"})     # HL7 table 0001
MAX_TEXT = 120          # procedure text, finding messages: longer text is cut
REDACTED = "[redacted]"


@dataclass(frozen=True, slots=True)
class Deidentified:
    """What may be sent (``context``) and the aliases that stay here (alias → appointment key)."""

    context: dict[str, Any]
    aliases: dict[str, str]


def deidentify(
    candidate: Any,
    others: Sequence[Any] = (),
    findings: Sequence[Any] = (),
    *,
    now: datetime,
    patient: Patient | None = None,
) -> Deidentified:
    """The analysis context for ``candidate`` against ``others`` and the rules' ``findings``.

    Bookings are read by attribute: the rules' ``Booking`` (key, start, end, status, priority,
    procedures, locations, personnel, patient_key, patient_sex, patient_age, facts) or a domain
    ``AppointmentEvent`` (services/locations/personnel resources, status_raw, patient). Findings
    need ``rule``, ``severity``, ``message`` and ``other``. ``patient`` adds age and sex when the
    booking lacks them and names the identifiers the scrubber removes.
    """
    patient = patient or getattr(candidate, "patient", None)
    start = getattr(candidate, "start", None)
    anchor: datetime = start if isinstance(start, datetime) else now
    aliases = {f"A{index}": _key(b) for index, b in enumerate([candidate, *others])}
    by_key = {key: alias for alias, key in aliases.items() if key}
    own_key = _patient_key(candidate)
    scrub = _Scrubber(patient, own_key, by_key)
    staff: dict[str, str] = {}

    age = getattr(candidate, "patient_age", None)
    if patient is not None and patient.birth_date is not None:
        age = _age(patient.birth_date, anchor.date())
    sex = getattr(candidate, "patient_sex", "") or (patient.sex if patient is not None else "")
    booking = _booking(candidate, "A0", anchor, staff, scrub)
    booking["weekday"] = anchor.strftime("%a")
    booking["time_of_day"] = anchor.strftime("%H:%M")
    booking["booked_ahead"] = _rel(anchor - now)
    facts = getattr(candidate, "facts", None) or {}
    if facts:
        booking["facts"] = _facts(facts, anchor, scrub)
    neighbours = []
    for index, other in enumerate(others, start=1):
        view = _booking(other, f"A{index}", anchor, staff, scrub)
        view["same_patient"] = bool(own_key) and _patient_key(other) == own_key
        neighbours.append(view)
    context = {
        "patient": {"age_band": age_band(age), "sex": _sex(sex)},
        "booking": booking,
        "neighbours": neighbours,
        "rule_findings": [_finding(f, by_key, scrub) for f in findings],
    }
    return Deidentified(context, aliases)


def age_band(age: int | None) -> str | None:
    """Ten-year bands; 90 and over are one band (HIPAA Safe Harbor)."""
    if age is None or age < 0:
        return None
    if age >= 90:
        return "90+"
    low = age // 10 * 10
    return f"{low}-{low + 9}"


def _age(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def _sex(value: str) -> str:
    value = (value or "").strip().upper()[:1]
    return value if value in SEXES else "U"


def _rel(delta: timedelta) -> str:
    """``+26h``, ``-1h30m``, ``+0h``."""
    minutes = round(delta.total_seconds() / 60)
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours}h{rest:02d}m" if rest else f"{sign}{hours}h"


def _key(booking: Any) -> str:
    return str(getattr(booking, "key", "") or "")


def _patient_key(booking: Any) -> str:
    key = getattr(booking, "patient_key", None)
    if key:
        return str(key)
    patient = getattr(booking, "patient", None)
    return patient.key if patient is not None else ""


def _booking(
    booking: Any, alias: str, anchor: datetime, staff: dict[str, str], scrub: _Scrubber,
) -> dict[str, Any]:
    start, end = getattr(booking, "start", None), getattr(booking, "end", None)
    view: dict[str, Any] = {"ref": alias}
    if isinstance(start, datetime):
        view["start"] = _rel(start - anchor)
    if isinstance(start, datetime) and isinstance(end, datetime):
        view["duration_min"] = round((end - start).total_seconds() / 60)
    status = getattr(booking, "status", None) or getattr(booking, "status_raw", "")
    view["status"] = scrub(str(status or "")[:20])
    view["priority"] = scrub(str(getattr(booking, "priority", "") or "")[:2])
    view["procedures"] = [
        {"code": scrub(code[:20]), "text": scrub(text[:MAX_TEXT]), "system": scrub(system[:20])}
        for code, text, system in _procedures(booking)]
    view["locations"] = [scrub(code[:40]) for code in _codes(getattr(booking, "locations", ()))]
    view["staff"] = [{"ref": staff.setdefault(ident, f"S{len(staff) + 1}"), "role": scrub(role[:20])}
                     for ident, role in _personnel(booking)]
    return view


def _procedures(booking: Any) -> Iterable[tuple[str, str, str]]:
    procedures = getattr(booking, "procedures", None)
    if procedures is not None:
        for item in procedures:
            parts = [str(p or "") for p in item][:3]
            code, text, system = parts + [""] * (3 - len(parts))
            yield code, text, system
        return
    for service in getattr(booking, "services", ()):
        yield service.code, service.text, service.coding_system


def _codes(items: Iterable[Any]) -> Iterable[str]:
    for item in items:
        yield item if isinstance(item, str) else str(getattr(item, "code", ""))


def _personnel(booking: Any) -> Iterable[tuple[str, str]]:
    for item in getattr(booking, "personnel", ()):
        if isinstance(item, tuple | list):
            yield str(item[0]), str(item[1]) if len(item) > 1 else ""
        else:
            yield str(getattr(item, "code", "")), str(getattr(item, "role", ""))


def _facts(facts: Mapping[str, object], anchor: datetime, scrub: _Scrubber) -> dict[str, Any]:
    """Clinical facts with scalar values; dates become days relative to the booking."""
    out: dict[str, Any] = {}
    for name, value in facts.items():
        key = scrub(str(name)[:40])
        if isinstance(value, bool | int | float):
            out[key] = value
        elif isinstance(value, datetime | date):
            day = value.date() if isinstance(value, datetime) else value
            out[key] = f"{(day - anchor.date()).days:+d}d"
        elif isinstance(value, tuple | list | frozenset | set) and all(isinstance(v, str) for v in value):
            out[key] = sorted(scrub(v[:40]) for v in value)
    return out


def _finding(finding: Any, by_key: Mapping[str, str], scrub: _Scrubber) -> dict[str, Any]:
    other = getattr(finding, "other", None)
    return {
        "rule": scrub(str(getattr(finding, "rule", ""))[:64]),
        "severity": str(getattr(finding, "severity", "")),
        "message": scrub(str(getattr(finding, "message", ""))[:MAX_TEXT]),
        "other": by_key.get(other, "other") if other else None,
    }


class _Scrubber:
    """Replaces the patient's identifiers and real appointment keys inside free text."""

    def __init__(self, patient: Patient | None, patient_key: str, by_key: Mapping[str, str]) -> None:
        tokens = {patient_key.rpartition("|")[2]}          # the MRN (the authority is no PHI)
        if patient is not None:
            tokens.update((patient.mrn, patient.family_name, patient.given_name))
            tokens.update(p.number for p in patient.phones)
            tokens.update(re.sub(r"\D", "", p.number) for p in patient.phones)
            if patient.birth_date is not None:
                b = patient.birth_date
                tokens.update((b.strftime("%Y%m%d"), b.isoformat(), b.strftime("%m/%d/%Y")))
        words = sorted((t.strip() for t in tokens if t and len(t.strip()) >= 2), key=len, reverse=True)
        self._secrets = re.compile(
            "|".join(rf"(?<!\w){re.escape(w)}(?!\w)" for w in words), re.IGNORECASE) if words else None
        self._by_key = dict(by_key)
        for key, alias in by_key.items():           # "F:12345" also as the bare "12345"
            bare = key.partition(":")[2]
            if len(bare) >= 3:
                self._by_key.setdefault(bare, alias)
        keys = sorted((k for k in self._by_key if k), key=len, reverse=True)
        self._keys = re.compile(
            "|".join(rf"(?<!\w){re.escape(k)}(?!\w)" for k in keys)) if keys else None

    def __call__(self, text: str) -> str:
        if self._keys is not None:
            text = self._keys.sub(lambda m: self._by_key[m.group(0)], text)
        if self._secrets is not None:
            text = self._secrets.sub(REDACTED, text)
        return text
