"""Reading optional clinical facts (eGFR, implants, pregnancy, ...) that a feed may attach to a booking.

Fact keys the rules understand (all optional; a rule whose facts are absent stays quiet):
``egfr`` (number, or None = no result on file), ``egfr_date``, ``aki``, ``dialysis``,
``renal_disease``, ``kidney_transplant``, ``single_kidney``, ``diabetes``, ``hypertension``,
``metformin``, ``patient_class`` (PV1-2: I inpatient, E emergency, O outpatient),
``implants`` (list of names, or mappings with ``type``, ``mr_status`` safe|conditional|unsafe|unknown,
``cleared``), ``mr_cleared``, ``pregnancy_status`` (negative|positive|unknown), ``pregnancy_test_date``,
``pregnancy_test_result``, ``pregnancy_waiver``, ``ordered_at``, ``surgery_at``.
Dates may be ``date``/``datetime`` values or ISO strings; naive times are in the facility zone.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time, tzinfo

from .model import Booking

RISK_FLAGS = ("renal_disease", "dialysis", "kidney_transplant", "single_kidney", "diabetes",
              "hypertension", "metformin")


def fact(booking: Booking, name: str, other: Booking | None = None) -> object:
    """A fact of the booking (or, failing that, of the other booking of the same patient)."""
    value = booking.facts.get(name) if booking.facts else None
    if value is None and other is not None and other.facts:
        value = other.facts.get(name)
    return value


def flag(booking: Booking, name: str, other: Booking | None = None) -> bool:
    value = fact(booking, name, other)
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "y", "1")
    return bool(value)


def number(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip().lstrip("<>=").strip())
    except ValueError:
        return None


def when(value: object, tz: tzinfo) -> datetime | None:
    """A fact's date/time as an aware datetime (a bare date means its local midnight)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time(0))
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip())
        except ValueError:
            return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def egfr(booking: Booking, other: Booking | None = None) -> float | None:
    return number(fact(booking, "egfr", other))


def severe_renal(booking: Booking, other: Booking | None, threshold: float, *,
                 dialysis: bool) -> bool:
    """eGFR below the threshold, or AKI (or dialysis, where the rule counts it)."""
    value = egfr(booking, other)
    return ((value is not None and value < threshold) or flag(booking, "aki", other)
            or (dialysis and flag(booking, "dialysis", other)))


def implants(booking: Booking) -> list[Mapping[str, object]]:
    """The ``implants`` fact as a list of mappings (``type`` at least)."""
    raw = fact(booking, "implants")
    if raw is None or raw is False:
        return []
    items = raw if isinstance(raw, list | tuple) else [raw]
    out: list[Mapping[str, object]] = []
    for item in items:
        if isinstance(item, Mapping):
            out.append(item)
        elif item:
            out.append({"type": str(item)})
    return out
