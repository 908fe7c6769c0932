"""Extraction of appointment and order events: identity, timing cascade, patient, resources, orders."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from radsched_engine.domain.extract import appointment_from, event_for, order_event_from
from radsched_engine.domain.model import NULL, AppointmentEvent, OrderEvent, Phone
from radsched_engine.errors import Location, Reject
from radsched_engine.hl7.message import Message
from tests.hl7.helpers import exchange, hl7, seg

NY = ZoneInfo("America/New_York")
MSH = "MSH|^~\\&|RIS|HOSP|RADSCHED|RAD|20261201083000-0500||SIU^S12^SIU_S12|C1|P|2.5.1"
PID = seg("PID", {1: "1", 3: "111^^^SSA^SS~MRN42 ^^^HOSP^MR", 5: "DOE&Van^JANE^Q", 7: "19800415",
                  8: "F", 11: "1 Main St",
                  13: "^PRN^PH^^1^413^5550100~^PRN^CP^^1^413^5550199~^NET^Internet^jane@example.org",
                  14: "5551234"})
FULL = hl7(
    MSH,
    seg("SCH", {1: "PL1001^RIS", 2: " FL1001 ^SCHED", 6: "Follow-up^Follow-up visit",
                7: "ROUTINE^Routine exam", 8: "NORMAL", 9: "30", 10: "min", 11: "^^30^20261215090000^^S",
                12: "1234^WELBY^MARCUS^^^DR", 25: "Booked", 26: "ORD1~ORD2", 27: "ACC1"}),
    seg("TQ1", {1: "1", 7: "20261215090000", 8: "20261215094500", 9: "A"}),
    "NTE|1||Prefers mornings~Bring prior films",
    PID,
    seg("PV1", {1: "1", 2: "O", 3: "RAD^CT1^^HOSP", 8: "5678^HOUSE^GREGORY^^^DR"}),
    "RGS|1|A",
    seg("AIS", {1: "1", 2: "A", 3: "74177^CT ABD/PELVIS W CONTRAST^CPT", 4: "20261215090000", 7: "30",
                8: "min"}),
    seg("AIG", {1: "1", 2: "A", 3: "CT1^Scanner 1", 4: "CT^CT scanner", 8: "20261215090000", 11: "30",
                12: "min"}),
    seg("AIL", {1: "1", 2: "A", 3: "CT1^^^HOSP^^^MAIN^1^CT Scanner 1", 4: "CT", 6: "20261215090000",
                9: "30", 10: "min"}),
    seg("AIP", {1: "1", 2: "A", 3: "5678^RAD^TECH^^^^^^^^^^TECH", 4: "TECH", 6: "20261215091500",
                9: "15", 10: "min"}),
)


def sch(**fields: str) -> str:
    """An SCH segment with SCH-1 = "1" and ``f<n>=value`` fields."""
    values = {1: "1"} | {int(k[1:]): v for k, v in fields.items()}
    return seg("SCH", values)


def appt(*segments: str, msh: str = MSH) -> AppointmentEvent:
    return appointment_from(Message.parse(hl7(msh, *segments)), NY)


def test_full_appointment() -> None:
    ev = appointment_from(Message.parse(FULL), NY)
    assert ev.trigger == "S12" and ev.placer_id == "PL1001" and ev.filler_id == "FL1001"
    assert ev.key == "F:FL1001"
    assert ev.start == datetime(2026, 12, 15, 9, 0, tzinfo=NY)
    assert ev.duration == timedelta(minutes=45)                      # TQ1-8 wins over SCH-9
    assert ev.end == datetime(2026, 12, 15, 9, 45, tzinfo=NY)
    assert ev.priority == "A"                                          # TQ1-9 before SCH-11.6
    assert ev.status_raw == "Booked" and ev.reason == "Routine exam"
    assert ev.notes == "Prefers mornings\nBring prior films"
    assert ev.referring_physician == "DR GREGORY HOUSE"               # PV1-8 before SCH-12
    assert ev.placer_order_numbers == ("ORD1", "ORD2") and ev.filler_order_numbers == ("ACC1",)
    assert ev.event_time == datetime(2026, 12, 1, 8, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert ev.warnings == ()
    p = ev.patient
    assert p is not None
    assert (p.mrn, p.authority, p.family_name, p.given_name) == ("MRN42", "HOSP", "DOE", "JANE")
    assert p.birth_date == date(1980, 4, 15) and p.sex == "F" and p.key == "HOSP|MRN42"
    assert p.phones == (Phone("+14135550100", "PRN", "PH"), Phone("+14135550199", "PRN", "CP"),
                        Phone("5551234", "WPN", ""))
    (svc,), (loc,), (staff,), (gen,) = ev.services, ev.locations, ev.personnel, ev.general
    assert (svc.code, svc.text, svc.coding_system, svc.action) == (
        "74177", "CT ABD/PELVIS W CONTRAST", "CPT", "A")
    assert svc.start == ev.start and svc.duration == timedelta(minutes=30)
    assert (loc.code, loc.text, loc.role) == ("CT1", "CT Scanner 1", "CT")
    assert (staff.code, staff.text, staff.role) == ("5678", "TECH RAD", "TECH")
    assert staff.start == datetime(2026, 12, 15, 9, 15, tzinfo=NY) and staff.duration == timedelta(minutes=15)
    assert (gen.code, gen.text, gen.role) == ("CT1", "Scanner 1", "CT")
    assert [r.kind for r in ev.resources] == ["service", "location", "personnel", "general"]


def test_identity_rules() -> None:
    assert appt("SCH| P1 ").key == "P:P1"
    ev = appt('SCH|""|F9')
    assert ev.placer_id is None and ev.filler_id == "F9"
    with pytest.raises(Reject) as info:
        appt('SCH|""|  ', PID)
    assert info.value.code == 101 and info.value.location == Location("SCH", 1, 2, 1, 1)
    with pytest.raises(Reject) as info:
        appt(PID)
    assert info.value.code == 100 and str(info.value.location) == "SCH"


@pytest.mark.parametrize(("segments", "start"), [
    ([sch(f11="^^^20250310083000"), seg("TQ1", {1: "1", 7: "20250310080000"})], datetime(2025, 3, 10, 8, 0)),
    ([sch(f11="^^^20250310083000")], datetime(2025, 3, 10, 8, 30)),
    (["SCH|1", seg("AIP", {1: "1", 3: "D1", 6: "20250310090000"}), seg("AIS", {1: "1", 3: "CT",
                                                                          4: "20250310091000"})],
     datetime(2025, 3, 10, 9, 10)),
    (["SCH|1", seg("AIP", {1: "1", 3: "D1", 6: "20250310090000"}),
      seg("AIL", {1: "1", 3: "CT1", 6: "20250310092000"})], datetime(2025, 3, 10, 9, 20)),
    (["SCH|1", seg("AIG", {1: "1", 3: "X", 4: "Y", 8: "20250310093000"}),
      seg("AIP", {1: "1", 3: "D1", 6: "20250310090000"})], datetime(2025, 3, 10, 9, 0)),
    (["SCH|1", seg("AIG", {1: "1", 3: "X", 4: "Y", 8: "20250310093000"})], datetime(2025, 3, 10, 9, 30)),
])
def test_start_cascade(segments: list[str], start: datetime) -> None:
    assert appt(*segments).start == start.replace(tzinfo=NY)


def test_no_start_at_all() -> None:
    ev = appt("SCH|1", PID)
    assert ev.start is None and ev.duration is None and ev.end is None


def test_offset_in_start() -> None:
    ev = appt(sch(f11="^^^20250310083000+0100"))
    assert ev.start is not None and ev.start.astimezone(UTC) == datetime(2025, 3, 10, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize(("segments", "minutes"), [
    ([sch(f11="^^^202503100800"), seg("TQ1", {1: "1", 6: "20^min", 7: "202503100800"})], 20),
    ([sch(f9="45", f10="min", f11="^^^202503100800^202503100830")], 30),
    ([sch(f9="45", f10="min", f11="^^M40^202503100800")], 40),
    ([sch(f9="3600.000", f10="s", f11="1.000^^3600.000^202503100800")], 60),   # bare: SCH-10 units
    ([sch(f9="45", f10="MIN^MINUTES", f11="^^^202503100800")], 45),
    ([sch(f9="10", f10="minutes", f11="^^^202503100800")], 10),
    ([sch(f11="^^^202503100800"), seg("AIL", {1: "1", 3: "CT1", 6: "202503100800", 9: "25",
                                              10: "min"})], 25),
    ([sch(f11="^^^202503100800"), seg("AIS", {1: "1", 3: "CT", 7: "3600.000", 8: "s"})], 60),
])
def test_duration_cascade(segments: list[str], minutes: int) -> None:
    assert appt(*segments).duration == timedelta(minutes=minutes)


def test_end_before_start_or_far_away_is_ignored_with_a_warning() -> None:
    ev = appt(sch(f11="1.000^^3600.000^20210325083000^20201023093000"), PID)
    assert ev.start == datetime(2021, 3, 25, 8, 30, tzinfo=NY)
    assert ev.duration == timedelta(hours=60)        # TQ-3 bare number, no SCH-10: minutes
    assert ev.warnings == ("SCH-11.5: appointment end is before the start; ignored",)
    ev = appt(sch(f9="15", f10="min", f11="^^15^20150613140000^20160621141500"))
    assert ev.duration == timedelta(minutes=15) and "more than a day" in ev.warnings[0]


def test_resource_offsets() -> None:
    ev = appt(sch(f11="^^^202503100800"),
              seg("AIS", {1: "1", 3: "CT", 5: "30", 6: "min", 7: "15", 8: "min"}),
              seg("AIL", {1: "1", 3: "CT1"}))
    (svc,), (loc,) = ev.services, ev.locations
    assert svc.start == datetime(2025, 3, 10, 8, 30, tzinfo=NY) and svc.duration == timedelta(minutes=15)
    assert loc.start is None


def test_malformed_start_is_102_without_echoing_it() -> None:
    for segs, loc in [([sch(f11="^^^Aug 15 2025")], Location("SCH", 1, 11, 1, 4)),
                      (["SCH|1", seg("TQ1", {1: "1", 7: "2025-03-10"})], Location("TQ1", 1, 7, 1, None)),
                      (["SCH|1", "AIS|1||CT|10/03/2025"], Location("AIS", 1, 4, 1, None))]:
        with pytest.raises(Reject) as info:
            appt(*segs)
        assert info.value.code == 102 and info.value.location == loc
        assert "2025" not in str(info.value)


def test_malformed_resource_time_is_a_warning_when_not_needed() -> None:
    ev = appt(sch(f11="^^^202503100800"), seg("AIS", {1: "1", 3: "CT", 4: "10/03/2025", 7: "abc",
                                                     8: "min"}))
    assert ev.start is not None and ev.services[0].start is None and ev.services[0].duration is None
    assert ev.warnings == ("AIS-4: AIS start is not a valid date/time; ignored",
                           "AIS-7: AIS duration is not a valid duration; ignored")


def test_malformed_appointment_duration_is_102() -> None:
    with pytest.raises(Reject) as info:
        appt(sch(f9="thirty", f10="min", f11="^^^202503100800"))
    assert info.value.code == 102 and info.value.location == Location("SCH", 1, 9, 1, None)


def test_unknown_unit_is_a_warning() -> None:
    ev = appt(sch(f9="30", f10="fortnights", f11="^^^202503100800"),
              seg("AIS", {1: "1", 3: "CT", 7: "20", 8: "min"}))
    assert ev.duration == timedelta(minutes=20) and "unknown duration unit" in ev.warnings[0]


@pytest.mark.parametrize(("tq1", "sch_priority", "expected"), [
    ("S", "", "S"), ("STAT", "", "S"), ("", "A", "A"), ("ASAP", "R", "A"), ("", "", "R"),
    ("P", "", "P"), ("TS30", "", "T"), ("URGENT-ISH", "", "R"), ("", "C", "R"),
])
def test_priority(tq1: str, sch_priority: str, expected: str) -> None:
    ev = appt(seg("SCH", {1: "1", 11: f"^^^202503100800^^{sch_priority}"}),
              seg("TQ1", {1: "1", 7: "202503100800", 9: tq1}))
    assert ev.priority == expected


def test_patient_rules() -> None:
    ev = appt("SCH|1", seg("PID", {1: "1", 2: "P2^^^OLD", 3: '""~X1^^^A^PI', 5: '""^Jane', 7: "Aug 15, 1942",
                                   8: '""', 13: "(555)111-2222"}))
    p = ev.patient
    assert p is not None
    assert (p.mrn, p.authority) == ("X1", "A")            # first usable repetition when no MR
    assert p.family_name == NULL and p.given_name == "Jane" and p.sex == NULL
    assert p.birth_date is None
    assert ev.warnings == ("PID-7: birth date is not a valid date; stored as unknown",)
    assert p.phones == (Phone("(555)111-2222", "PRN", ""),)
    p = appt("SCH|1", seg("PID", {1: "1", 2: "P2^^^OLD"})).patient
    assert p is not None and (p.mrn, p.authority) == ("P2", "OLD")     # PID-2 fallback
    assert appt("SCH|1").patient is None


def test_phone_sources() -> None:
    p = appt("SCH|1", seg("PID", {1: "1", 3: "1",
                                  14: '^WPN^PH^^44^20^7946 0000^12~^^CP^^^^^^^^^0791112345~""^PRN'})).patient
    assert p is not None
    assert p.phones == (Phone("+442079460000 x12", "WPN", "PH"), Phone("0791112345", "WPN", "CP"))


def test_resources_without_rgs_in_any_order() -> None:
    ev = appt(sch(f11="^^^202503100800"), "AIP|1|A|D1^JONES^ANN|^Doctor", "AIS|1|A|CT^Head CT",
              "AIS|2|A|MR^Head MR", "AIL|1|A|^R1", "AIG|1|A|", "NTE|1||x")
    assert [s.code for s in ev.services] == ["CT", "MR"]
    assert ev.personnel[0].text == "ANN JONES" and ev.personnel[0].role == "Doctor"
    assert ev.locations[0].code == "R1" and ev.general == ()
    assert ev.notes == ""                                # NTE not directly after SCH


def test_orders() -> None:
    raw = hl7(
        "MSH|^~\\&|RIS|HOSP|RADSCHED|RAD|20261201083000||ORM^O01|C1|P|2.3.1",
        "PID|1||MRN42^^^HOSP^MR||DOE^JANE",
        seg("ORC", {1: "NW", 2: "ORD1^EPIC", 3: "ACC1^RIS", 5: "SC", 7: "^^^20261215090000^^S",
                    9: "20261201082500", 12: "1234^WELBY^MARCUS^^^DR"}),
        seg("OBR", {1: "1", 2: "ORD1^EPIC", 3: "ACC1^RIS", 4: "74177^CT ABD^CPT", 7: "20261215090000",
                    13: "Abdominal pain", 18: "ACC1", 24: "CT", 27: "^^^20261215090000^^S",
                    31: "R10.9^Abdominal pain^I10"}),
        "NTE|1||note",
        seg("ORC", {1: "CA", 2: "ORD2", 5: "CA", 9: "bad time"}),
        seg("OBR", {1: "2", 4: "71045^XR CHEST^CPT", 7: "2026-12-16", 16: "5678^HOUSE^GREGORY",
                    36: "20261216100000"}),
    )
    ev = order_event_from(Message.parse(raw), NY)
    assert isinstance(ev, OrderEvent) and ev.patient is not None and ev.patient.mrn == "MRN42"
    first, second = ev.orders
    assert (first.control, first.placer_order_number, first.filler_order_number, first.status) == (
        "NW", "ORD1", "ACC1", "SC")
    assert (first.procedure_code, first.procedure_text, first.coding_system) == ("74177", "CT ABD", "CPT")
    assert (first.modality, first.accession, first.priority) == ("CT", "ACC1", "S")
    assert first.requested_at == datetime(2026, 12, 15, 9, 0, tzinfo=NY)
    assert first.ordering_provider == "DR MARCUS WELBY" and first.reason == "Abdominal pain"
    assert first.transaction_time == datetime(2026, 12, 1, 8, 25, tzinfo=NY)
    assert (second.control, second.placer_order_number, second.status) == ("CA", "ORD2", "CA")
    assert second.requested_at == datetime(2026, 12, 16, 10, 0, tzinfo=NY)   # OBR-7 bad: OBR-36
    assert second.ordering_provider == "GREGORY HOUSE" and second.transaction_time is None
    assert ev.warnings == ("OBR-7: OBR-7 observation time is not a valid date/time; ignored",
                           "ORC-9: ORC-9 transaction time is not a valid date/time; ignored")


def test_omi_uses_tq1_and_ipc() -> None:
    raw = hl7(
        "MSH|^~\\&|RIS|HOSP|RADSCHED|RAD|20261201083000||OMI^O23^OMI_O23|C1|P|2.5.1",
        "PID|1||MRN42^^^HOSP^MR",
        "ORC|NW|ORD1|||SC",
        seg("TQ1", {1: "1", 7: "20261215090000", 9: "STAT"}),
        seg("OBR", {1: "1", 2: "ORD1", 4: "74177^CT ABD^CPT", 18: "ACCX", 24: "RAD"}),
        "IPC|ACC9^RIS|RP1|1.2.3|SPS1|CT^Computed Tomography^DCM",
    )
    (order,) = order_event_from(Message.parse(raw), NY).orders
    assert (order.accession, order.modality, order.priority) == ("ACC9", "CT", "S")
    assert order.requested_at == datetime(2026, 12, 15, 9, 0, tzinfo=NY)


def test_order_without_orc_is_100() -> None:
    with pytest.raises(Reject) as info:
        order_event_from(Message.parse(hl7("MSH|^~\\&|A|B|C|D|2025||ORM^O01|1|P|2.3", "PID|1||1")), NY)
    assert info.value.code == 100 and str(info.value.location) == "ORC"


def test_event_for_memoises_and_reports_warnings_once() -> None:
    raw = hl7(MSH, sch(f11="^^^202503100800"), "PID|1||42||DOE||19421315")
    ex = exchange(raw)
    ex.message = Message.parse(raw)
    ev = event_for(ex, NY)
    assert isinstance(ev, AppointmentEvent) and event_for(ex, NY) is ev and ex.data["event"] is ev
    assert [(w.code, w.severity, str(w.location)) for w in ex.warnings] == [(102, "W", "PID-7")]
    assert "1942" not in ex.warnings[0].text


def test_event_for_other_types_and_no_message() -> None:
    raw = hl7("MSH|^~\\&|A|B|C|D|20250101||ADT^A01|1|P|2.5", "PID|1||42")
    ex = exchange(raw)
    assert event_for(ex, NY) is None and "event" not in ex.data
    ex.message = Message.parse(raw)
    assert event_for(ex, NY) is None and ex.data["event"] is None
    raw = hl7("MSH|^~\\&|A|B|C|D|20250101||ORM^O02|1|P|2.5", "ORC|OK")
    ex = exchange(raw)
    ex.message = Message.parse(raw)
    assert event_for(ex, NY) is None
