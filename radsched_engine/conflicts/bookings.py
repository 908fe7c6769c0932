"""Bookings for the rules: the candidate a message describes, stored rows, and the locks around them."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from ..domain.model import NULL, AppointmentEvent
from ..domain.model import Resource as EventResource
from ..rules import Booking, ProcedureCatalog, booking_from_event, normalize_status
from ..rules.adapt import age_on
from ..store.appointments import patient_lock_name, slot_lock_names
from ..store.conflicts import Resource, StoredAppointment
from ..store.mapping import URGENCY, status_for

PRIORITY_OF_URGENCY = {urgency: code for code, urgency in URGENCY.items()}
# Resource kinds the slot rules look at (and that are locked); services are procedures.
SLOT_KINDS = ("location", "personnel")


def _clean(value: str) -> str:
    return "" if value == NULL else value


def booking_from_stored(row: StoredAppointment, key: str | None = None) -> Booking:
    """A stored appointment as the rules see it (its resource rows as procedures, rooms, staff)."""
    return Booking(
        key=key or row.key,
        patient_key=row.patient_key,
        start=row.start,
        end=max(row.end, row.start),
        status=normalize_status(row.status.replace("_", " ")),
        procedures=tuple((code, text, system) for kind, code, text, system, _ in row.resources
                         if kind == "service"),
        locations=tuple(dict.fromkeys(code for kind, code, *_ in row.resources if kind == "location")),
        personnel=tuple((code, role) for kind, code, _, _, role in row.resources if kind == "personnel"),
        priority=PRIORITY_OF_URGENCY.get(row.urgency, "R"),
    )


def _event_rows(resources: tuple[EventResource, ...]) -> list[tuple[Resource, str]]:
    """The message's resource segments as stored rows, with their action code (D = remove)."""
    rows = []
    for r in resources:
        code = _clean(r.code)
        if code:
            rows.append(((r.kind, code, _clean(r.text), _clean(r.coding_system), _clean(r.role)),
                         r.action.upper()[:1]))
    return rows


def merged_resources(event: AppointmentEvent, stored: tuple[Resource, ...]) -> tuple[Resource, ...]:
    """The resources persist will store: S12/S13 replace the list when they carry one, S14 merges
    by (kind, code) — action D removes, anything else replaces or adds."""
    rows = _event_rows(event.resources)
    if not rows or event.trigger not in ("S12", "S13", "S14"):
        return stored
    fresh = tuple(res for res, action in rows if action != "D")
    if event.trigger != "S14":
        return fresh
    touched = {(res[0], res[1]) for res, _ in rows}
    return tuple(res for res in stored if (res[0], res[1]) not in touched) + fresh


def candidate(event: AppointmentEvent, key: str, stored: StoredAppointment | None,
              catalog: ProcedureCatalog | None = None) -> Booking | None:
    """The booking the message asks for, or None when it has no time to check.

    S12 (or no stored appointment): from the message alone (``booking_from_event``). Updates:
    the stored appointment with what the message changes, the way persist applies it (a new
    start keeps the stored length unless a duration is sent; S14 merges resources; routine
    priority and a trigger-only status keep the stored values).
    """
    if stored is None or event.trigger == "S12":
        return booking_from_event(event, catalog, key=key)
    base = booking_from_stored(stored, key)
    start = event.start or base.start
    if event.duration is not None and event.duration >= timedelta(0):
        end = start + event.duration
    else:
        end = start + (base.end - base.start)
    resources = merged_resources(event, stored.resources)
    status, by_trigger = status_for(event.trigger, event.status_raw)
    if status is not None and (not by_trigger or event.trigger not in ("S13", "S14")):
        base = replace(base, status=normalize_status(status.replace("_", " ")))
    patient = event.patient
    patient_key, sex, age = base.patient_key, "", None
    if patient is not None:
        mrn = _clean(patient.mrn)
        patient_key = patient.key if mrn else ""
        sex = _clean(patient.sex)
        age = age_on(patient.birth_date, start.date())
    return replace(
        base, start=start, end=end, patient_key=patient_key, patient_sex=sex, patient_age=age,
        priority=(event.priority or "R").strip().upper()[:1] if event.priority not in ("", "R")
        else base.priority,
        procedures=tuple((code, text, system) for kind, code, text, system, _ in resources
                         if kind == "service"),
        locations=tuple(dict.fromkeys(code for kind, code, *_ in resources if kind == "location")),
        personnel=tuple((code, role) for kind, code, _, _, role in resources if kind == "personnel"),
    )


def has_patient(patient_key: str) -> bool:
    return bool(patient_key.rpartition("|")[2].strip())


def slot_resources(booking: Booking) -> list[tuple[str, str]]:
    """(kind, code) of the resources whose double booking the rules check."""
    out = [("location", code) for code in booking.locations if code]
    out += [("personnel", code) for code, _ in dict.fromkeys(booking.personnel) if code]
    return list(dict.fromkeys(out))


def lock_names(booking: Booking) -> list[str]:
    """Advisory lock names for checking ``booking``: one per (room or staff member, UTC day) it
    touches, plus one for its patient.

    Two bookings that overlap on a resource share at least one instant, hence one UTC day and
    that day's lock; two bookings of one patient share the patient lock whatever their times.
    So of two concurrent transactions that could conflict, the second waits for the first to
    commit and then sees its row.
    """
    names = [n for kind, code in slot_resources(booking)
             for n in slot_lock_names(kind, code, booking.start, booking.end)]
    if has_patient(booking.patient_key):
        names.append(patient_lock_name(booking.patient_key))
    return names
