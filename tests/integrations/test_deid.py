"""The de-identified analysis context, and what actually reaches the (fake) Anthropic API."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from radsched_engine.domain.model import AppointmentEvent, Patient, Phone, Resource
from radsched_engine.integrations.claude import ClaudeAnalyzer, ClaudeSettings
from radsched_engine.integrations.deid import age_band, deidentify
from tests.fakes.fake_anthropic import FakeAnthropic, tool_use_body

ZONE = ZoneInfo("America/New_York")
START = datetime(2026, 3, 4, 9, 0, tzinfo=ZONE)
NOW = START - timedelta(hours=50)
PATIENT = Patient(mrn="MRN778812", authority="GENHOSP", family_name="Zabriskie", given_name="Henrietta",
                  birth_date=date(1981, 7, 14), sex="F",
                  phones=(Phone("(617)555-0123", "PRN", "CP"),
                          Phone("jane.z@example.org", "NET", "Internet")))


@dataclass(frozen=True, slots=True)
class Booking:
    """The shape of the rules' Booking (rules.model), as the conflict-check stage will pass it."""

    key: str
    patient_key: str
    start: datetime
    end: datetime
    status: str = "booked"
    procedures: tuple[tuple[str, str, str], ...] = ()
    locations: tuple[str, ...] = ()
    personnel: tuple[tuple[str, str], ...] = ()
    priority: str = "R"
    patient_sex: str = ""
    patient_age: int | None = None
    facts: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    severity: str
    message: str
    other: str | None = None


def candidate(**changes: object) -> Booking:
    base = Booking("F:55501", "GENHOSP|MRN778812", START, START + timedelta(minutes=30),
                   procedures=(("74177", "CT ABD/PELVIS W CONTRAST", "CPT"),), locations=("CT1",),
                   personnel=(("T1234", "TECH"), ("R77", "RAD")), patient_sex="F", patient_age=44)
    return Booking(**{**{f: getattr(base, f) for f in base.__dataclass_fields__}, **changes})


OTHERS = [
    Booking("F:55490", "GENHOSP|MRN778812", START - timedelta(hours=26),
            START - timedelta(hours=25, minutes=15),
            procedures=(("74240", "UGI BARIUM", "CPT"),), locations=("FL2",), personnel=(("T1234", "TECH"),)),
    Booking("F:55502", "GENHOSP|MRN000111", START + timedelta(minutes=15), START + timedelta(minutes=45),
            procedures=(("70450", "CT HEAD WO", "CPT"),), locations=("CT1",), priority="S"),
]
FINDINGS = [Finding("SEQ-BARIUM-CT", "block", "Barium study F:55490 within 48h before CT abd/pelvis.",
                    "F:55490"),
            Finding("RES-ROOM-OVERLAP", "block", "CT1 is double booked.", "F:55502")]


def test_age_bands() -> None:
    assert [age_band(a) for a in (0, 9, 10, 44, 89, 90, 104, None, -1)] == [
        "0-9", "0-9", "10-19", "40-49", "80-89", "90+", "90+", None, None]


def test_context_has_relative_times_aliases_and_no_keys() -> None:
    result = deidentify(candidate(), OTHERS, FINDINGS, now=NOW, patient=PATIENT)
    ctx = result.context
    assert result.aliases == {"A0": "F:55501", "A1": "F:55490", "A2": "F:55502"}
    assert ctx["patient"] == {"age_band": "40-49", "sex": "F"}
    booking = ctx["booking"]
    assert (booking["ref"], booking["start"], booking["duration_min"], booking["booked_ahead"]) == (
        "A0", "+0h", 30, "+50h")
    assert (booking["weekday"], booking["time_of_day"]) == ("Wed", "09:00")
    assert booking["procedures"] == [{"code": "74177", "text": "CT ABD/PELVIS W CONTRAST", "system": "CPT"}]
    assert booking["locations"] == ["CT1"]
    assert booking["staff"] == [{"ref": "S1", "role": "TECH"}, {"ref": "S2", "role": "RAD"}]
    first, second = ctx["neighbours"]
    assert (first["ref"], first["start"], first["duration_min"], first["same_patient"]) == (
        "A1", "-26h", 45, True)
    assert first["staff"] == [{"ref": "S1", "role": "TECH"}]        # same technologist, same alias
    assert (second["start"], second["same_patient"], second["priority"]) == ("+0h15m", False, "S")
    assert ctx["rule_findings"][0] == {"rule": "SEQ-BARIUM-CT", "severity": "block",
                                       "message": "Barium study A1 within 48h before CT abd/pelvis.",
                                       "other": "A1"}
    assert ctx["rule_findings"][1]["other"] == "A2"
    text = json.dumps(ctx)
    for secret in ("55501", "55490", "55502", "MRN", "T1234", "R77", "GENHOSP"):
        assert secret not in text


def test_age_from_birth_date_and_facts_dates_become_relative() -> None:
    old = Patient(mrn="X1", birth_date=date(1935, 1, 1), sex="male?")
    facts = {"egfr": 42, "dialysis": False, "egfr_date": date(2026, 2, 20), "implants": ("pacemaker",),
             "note": "free text is never sent"}
    ctx = deidentify(candidate(patient_age=None, patient_sex="", facts=facts), now=NOW, patient=old).context
    assert ctx["patient"] == {"age_band": "90+", "sex": "M"}
    assert ctx["booking"]["facts"] == {"egfr": 42, "dialysis": False, "egfr_date": "-12d",
                                       "implants": ["pacemaker"]}


def test_unknown_sex_values_are_not_passed_through() -> None:
    assert deidentify(candidate(patient_sex="Henrietta"), now=NOW).context["patient"]["sex"] == "U"


def test_domain_appointment_event_is_accepted() -> None:
    event = AppointmentEvent(
        trigger="S12", placer_id="P1", filler_id="55501", start=START, duration=timedelta(minutes=20),
        patient=PATIENT, status_raw="Booked",
        services=(Resource("service", "70551", "MRI BRAIN WO", "CPT"),),
        locations=(Resource("location", "MR3"),), personnel=(Resource("personnel", "D99", role="RAD"),))
    result = deidentify(event, now=NOW)
    booking = result.context["booking"]
    assert result.aliases["A0"] == "F:55501"
    assert result.context["patient"] == {"age_band": "40-49", "sex": "F"}
    assert (booking["duration_min"], booking["status"], booking["locations"]) == (20, "Booked", ["MR3"])
    assert booking["procedures"][0]["code"] == "70551" and booking["staff"] == [{"ref": "S1", "role": "RAD"}]


def identifiers() -> list[str]:
    return ["Zabriskie", "Henrietta", "MRN778812", "6175550123", "617)555-0123", "555-0123",
            "jane.z@example.org", "1981-07-14", "19810714", "07/14/1981", "F:55501", "55490"]


async def test_request_body_sent_to_claude_has_no_patient_identifiers(anthropic_fake: FakeAnthropic) -> None:
    # Identifiers smuggled into free text are scrubbed too (last line of defence).
    leaky = candidate(procedures=(
        ("74177", "CT A/P for ZABRISKIE, Henrietta MRN778812 tel 6175550123", "CPT"),))
    findings = [*FINDINGS, Finding("X", "info", "Patient Henrietta Zabriskie born 19810714", None)]
    deid = deidentify(leaky, OTHERS, findings, now=NOW, patient=PATIENT)
    anthropic_fake.reply(200, tool_use_body({"findings": [
        {"rule": "AI-X", "severity": "warn", "message": "Check the barium study.", "other": "A1"}]}))
    async with ClaudeAnalyzer(ClaudeSettings.from_env(anthropic_fake.env(), max_retries=0)) as claude:
        findings_back = await claude.analyze(deid)
    assert findings_back[0].other == "F:55490" and findings_back[0].source == "ai"
    raw = anthropic_fake.requests[0].raw.decode()
    sent = json.loads(anthropic_fake.requests[0].body["messages"][0]["content"])
    assert sent["booking"]["procedures"][0]["text"] == (
        "CT A/P for [redacted], [redacted] [redacted] tel [redacted]")
    for secret in identifiers():
        assert secret.lower() not in raw.lower(), secret
    assert not re.search(r"\b(19|20)\d\d-\d\d-\d\d\b", raw)          # no absolute dates at all
