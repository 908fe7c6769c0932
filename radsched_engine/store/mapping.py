"""How scheduling events become table columns: status, urgency, modality and the appointment patch."""

from __future__ import annotations

import dataclasses
import enum
from datetime import date, datetime, timedelta
from typing import Any

from ..domain.model import NULL, AppointmentEvent, Patient, Phone, Resource

# Trigger → stored status; SCH-25 (table 0278, spelled many ways) may refine it, see status_for.
TRIGGER_STATUS = {"S12": "SCHEDULED", "S13": "SCHEDULED", "S14": "SCHEDULED", "S15": "CANCELLED",
                  "S16": "DISCONTINUED", "S17": "DELETED", "S26": "NO_SHOW"}
_FILLER_STATUS = {
    "booked": "SCHEDULED", "scheduled": "SCHEDULED", "confirmed": "SCHEDULED", "overbook": "SCHEDULED",
    "sch": "SCHEDULED", "pending": "PENDING", "waitlist": "PENDING", "tentative": "PENDING",
    "started": "IN_PROGRESS", "arrived": "IN_PROGRESS", "checkedin": "IN_PROGRESS",
    "inprogress": "IN_PROGRESS", "complete": "COMPLETED", "completed": "COMPLETED",
    "cancelled": "CANCELLED", "canceled": "CANCELLED", "dc": "DISCONTINUED",
    "discontinued": "DISCONTINUED", "deleted": "DELETED", "noshow": "NO_SHOW",
}
# What SCH-25 may turn each trigger's status into (the trigger decides first).
_REFINABLE = {
    "S12": frozenset({"SCHEDULED", "PENDING", "IN_PROGRESS", "COMPLETED"}),
    "S13": frozenset(_FILLER_STATUS.values()),
    "S14": frozenset(_FILLER_STATUS.values()),
    "S15": frozenset({"NO_SHOW"}),          # athenahealth reports no-shows as S15 + NOSHOW
}
URGENCY = {"S": "stat", "A": "asap", "R": "routine", "P": "preop", "T": "timing_critical"}
# DICOM modality codes, looked for in AIG/AIL codes, roles and descriptions.
MODALITIES = frozenset({"CT", "MR", "MRI", "US", "XR", "CR", "DX", "MG", "NM", "PT", "PET", "RF",
                        "XA", "DXA", "BMD", "IR", "FL", "ECHO"})
_ZERO = timedelta(0)
_MOBILE = frozenset({"CP", "MOBILE", "CELL", "CELLULAR", "MOB", "SMS"})


_SEEN_STATUS: dict[str, str | None] = {}     # SCH-25 as sent → filler_status (a small vocabulary)


def filler_status(raw: str) -> str | None:
    """SCH-25 / AI*-filler status to a stored status (``Booked^...`` → SCHEDULED), or None."""
    if not raw or raw == NULL:
        return None
    try:
        return _SEEN_STATUS[raw]
    except KeyError:
        pass
    first = raw.split("^", 1)[0]
    found = _FILLER_STATUS.get("".join(ch for ch in first.lower() if ch.isalpha()))
    if len(_SEEN_STATUS) < 1024:
        _SEEN_STATUS[raw] = found
    return found


def status_for(trigger: str, status_raw: str) -> tuple[str | None, bool]:
    """(status, decided by the trigger alone?) for an SIU trigger and its SCH-25."""
    base = TRIGGER_STATUS.get(trigger)
    refined = filler_status(status_raw)
    if refined is not None and refined in _REFINABLE.get(trigger, ()):
        return refined, False
    return base, True


def modality_of(event: AppointmentEvent) -> str:
    """The modality named by an AIG (equipment) or AIL (room) resource, or ``""``."""
    for res in event.general + event.locations:
        for value in (res.role, res.code, res.text):
            for token in value.upper().replace("-", " ").replace("_", " ").split():
                if token in MODALITIES:
                    return "MR" if token == "MRI" else ("PT" if token == "PET" else token)
    return event.general[0].role if event.general and event.general[0].role != NULL else ""


def phone_of(phones: tuple[Phone, ...]) -> str | None:
    """The number to show: a mobile one, else a personal one, else the first (as sent)."""
    if not phones:
        return None
    for phone in phones:
        if phone.equipment.upper() in _MOBILE or phone.use.upper() in _MOBILE:
            return phone.number
    for phone in phones:
        if phone.use.upper() in ("PRN", "ORN", "PRS", ""):
            return phone.number
    return phones[0].number


def _clean(value: str) -> str:
    return "" if value == NULL else value


def patient_name(patient: Patient) -> str:
    return " ".join(p for p in (_clean(patient.given_name), _clean(patient.family_name)) if p)


def appointment_patch(event: AppointmentEvent, *, default_duration: timedelta,
                      conflicts: Any = dataclasses.MISSING) -> dict[str, Any]:
    """Columns an SIU event sets, for ``radsched_apply_appointment`` (JSON null = clear).

    S12 is a full snapshot: every column is set (absent values become empty). S13/S14 set only
    what the message carries (an explicit HL7 null clears). S15/S16/S17/S26 set the status and,
    when sent, SCH-25 and the event reason.
    """
    full = event.trigger == "S12"
    patch: dict[str, Any] = {}

    def put(column: str, value: str | None, *, required: bool = False) -> None:
        if value == NULL:
            patch[column] = "" if required else None
        elif value:
            patch[column] = value
        elif full:
            patch[column] = "" if required else None

    status, by_trigger = status_for(event.trigger, event.status_raw)
    if status is not None and (full or not by_trigger or event.trigger not in ("S13", "S14")):
        patch["status"] = status
    put("status_raw", event.status_raw)
    put("reason", event.reason)
    if event.trigger not in ("S12", "S13", "S14"):
        return patch

    if event.patient is not None:
        patch["patient_id"] = _clean(event.patient.mrn)
        patch["patient_key"] = event.patient.key if event.patient.mrn not in ("", NULL) else ""
        patch["patient_name"] = patient_name(event.patient)
        phone = phone_of(event.patient.phones)
        if phone is not None or full:
            patch["patient_phone"] = phone
    elif full:
        patch.update(patient_id="", patient_key="", patient_name="", patient_phone=None)
    put("modality", modality_of(event), required=True)
    service = event.services[0] if event.services else None
    put("study_type", (service.text or service.code) if service else "", required=True)
    if event.start is not None:
        patch["datetime"] = event.start.isoformat()
    if event.duration is not None and event.duration >= _ZERO:
        patch["duration_seconds"] = event.duration.total_seconds()
    elif full:
        patch["duration_seconds"] = default_duration.total_seconds()
    if full or event.priority != "R":
        patch["urgency"] = URGENCY.get(event.priority, "routine")
    put("referring_physician", event.referring_physician)
    put("notes", event.notes)
    put("placer_id", event.placer_id or "")
    put("filler_id", event.filler_id or "")
    refs = [f"P:{n}" for n in event.placer_order_numbers if n != NULL]
    refs += [f"F:{n}" for n in event.filler_order_numbers if n != NULL]
    if refs or full:
        patch["order_refs"] = refs
    if conflicts is not dataclasses.MISSING:
        patch["conflicts"] = jsonable(conflicts)
    return patch


def resource_rows(resources: tuple[Resource, ...]) -> list[dict[str, Any]]:
    """AI* resources as rows for ``appointment_resources`` (times omitted = the appointment's)."""
    rows = []
    times: dict[tuple[Any, ...], tuple[str, str | None]] = {}   # resources mostly share their times
    for res in resources:
        code = _clean(res.code)
        if not code:
            continue
        row: dict[str, Any] = {"kind": res.kind, "code": code, "text": _clean(res.text),
                               "coding_system": _clean(res.coding_system), "role": _clean(res.role),
                               "action": res.action.upper()[:1]}
        start = res.start
        if start is not None:
            key = (start, start.tzinfo, start.fold, res.duration)
            found = times.get(key)
            if found is None:
                end = res.end
                found = times[key] = (start.isoformat(), end.isoformat()
                                      if end is not None and end >= start else None)
            row["start_at"] = found[0]
            if found[1] is not None:
                row["end_at"] = found[1]
        rows.append(row)
    return rows


_PLAIN = frozenset((str, int, float, bool, type(None)))


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (dataclasses, enums, dates, tuples and sets converted)."""
    kind = type(value)
    if kind in _PLAIN:                 # most values (exact types: an enum is not a plain str)
        return value
    if kind is dict:
        return {k if type(k) is str else str(k): jsonable(v) for k, v in value.items()}
    if kind is list:
        return [jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    return value
