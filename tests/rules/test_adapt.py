"""An SIU appointment event as a Booking: status by trigger, duration fallbacks, deleted resources, age."""

from __future__ import annotations

from datetime import date, timedelta

from radsched_engine.domain.model import AppointmentEvent, Patient, Resource
from radsched_engine.rules import ProcedureCatalog, RuleSet
from radsched_engine.rules.adapt import age_on, booking_from_event

from .helpers import NOW, T0

CATALOG = ProcedureCatalog.load()


def event(**kw: object) -> AppointmentEvent:
    values: dict[str, object] = dict(
        trigger="S12", placer_id="P1", filler_id="F1", start=T0, duration=timedelta(minutes=30),
        patient=Patient("MRN1", "HOSP", "Doe", "Jane", date(1990, 6, 1), "F"), status_raw="Booked",
        priority="R",
        services=(Resource("service", "74177", "CT ABD PELVIS W", "CPT"),),
        locations=(Resource("location", "CT1", role="CT"), Resource("location", "OLD", action="D")),
        personnel=(Resource("personnel", "T1", role="TECH"),))
    values.update(kw)
    return AppointmentEvent(**values)  # type: ignore[arg-type]


def test_event_becomes_a_booking() -> None:
    b = booking_from_event(event(), CATALOG, facts={"egfr": 50})
    assert b is not None
    assert (b.key, b.patient_key, b.status, b.priority) == ("F:F1", "HOSP|MRN1", "booked", "R")
    assert b.end - b.start == timedelta(minutes=30)
    assert b.procedures == (("74177", "CT ABD PELVIS W", "CPT"),)
    assert b.locations == ("CT1",) and b.personnel == (("T1", "TECH"),)
    assert (b.patient_sex, b.patient_age, b.facts) == ("F", 35, {"egfr": 50})


def test_cancel_delete_and_noshow_triggers() -> None:
    for trigger, status in (("S15", "cancelled"), ("S17", "deleted"), ("S26", "noshow")):
        b = booking_from_event(event(trigger=trigger), CATALOG)
        assert b is not None and b.status == status and not b.active


def test_duration_falls_back_to_resources_then_catalog() -> None:
    aisle = Resource("location", "CT1", start=T0, duration=timedelta(minutes=45))
    b = booking_from_event(event(duration=None, locations=(aisle,)), CATALOG)
    assert b is not None and b.end == T0 + timedelta(minutes=45)
    b = booking_from_event(event(duration=None, locations=()), CATALOG)
    assert b is not None and b.end == T0 + timedelta(minutes=30)        # typical for 74177
    b = booking_from_event(event(duration=None, locations=()))
    assert b is not None and b.end == b.start
    assert booking_from_event(event(start=None)) is None


def test_adapted_bookings_conflict_like_hand_made_ones() -> None:
    first = booking_from_event(event(), CATALOG)
    second = booking_from_event(event(filler_id="F2", patient=Patient("MRN2", "HOSP")), CATALOG)
    assert first is not None and second is not None
    found = RuleSet().evaluate(second, [first], NOW)
    assert [f.rule for f in found if f.severity == "block"] == ["RES-ROOM-OVERLAP", "RES-STAFF-OVERLAP"]


def test_age_on() -> None:
    assert age_on(date(2000, 3, 10), date(2026, 3, 10)) == 26
    assert age_on(date(2000, 3, 11), date(2026, 3, 10)) == 25
    assert age_on(None, date(2026, 3, 10)) is None
    assert age_on(date(2030, 1, 1), date(2026, 3, 10)) is None
