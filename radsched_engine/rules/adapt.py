"""A parsed SIU appointment event turned into the rule engine's Booking."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta

from ..domain.model import AppointmentEvent
from .catalog import ProcedureCatalog
from .model import Booking, normalize_status

# Triggers that end an appointment whatever SCH-25 says.
_TRIGGER_STATUS = {"S15": "cancelled", "S17": "deleted", "S26": "noshow"}


def age_on(birth: date | None, day: date) -> int | None:
    if birth is None or birth > day:
        return None
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def booking_from_event(event: AppointmentEvent, catalog: ProcedureCatalog | None = None, *,
                       facts: Mapping[str, object] | None = None, group: str = "",
                       key: str | None = None) -> Booking | None:
    """The booking an SIU event describes (keyed ``key``, else the event's key), or None when it
    has no start time.

    The end comes from the event's duration, else the latest resource end, else the typical
    duration of its procedures in ``catalog`` (so R4 can still judge it), else the start itself.
    Resources whose segment action is D (delete) are left out.
    """
    start = event.start
    if start is None:
        return None
    services = tuple(r for r in event.services if r.action != "D")
    end = event.end
    if end is None:
        ends = [r.end for r in event.resources if r.end is not None and r.action != "D"]
        end = max(ends) if ends else None
    if end is None and catalog is not None and services:
        minutes = max(catalog.lookup(s.code, s.text, s.coding_system).typical_minutes for s in services)
        end = start + timedelta(minutes=minutes)
    patient = event.patient
    status = _TRIGGER_STATUS.get(event.trigger) or normalize_status(event.status_raw)
    return Booking(
        key=event.key if key is None else key,
        patient_key=patient.key if patient is not None else "|",
        start=start,
        end=end if end is not None and end >= start else start,
        status=status,
        procedures=tuple((s.code, s.text, s.coding_system) for s in services),
        locations=tuple(dict.fromkeys(r.code for r in event.locations if r.code and r.action != "D")),
        personnel=tuple((r.code, r.role) for r in event.personnel if r.code and r.action != "D"),
        priority=(event.priority or "R").strip().upper()[:1] or "R",
        patient_sex=patient.sex if patient is not None else "",
        patient_age=age_on(patient.birth_date, start.date()) if patient is not None else None,
        facts=dict(facts or {}),
        group=group,
    )
