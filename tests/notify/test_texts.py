"""Templates and quiet hours as pure functions: the facility zone, windows across midnight and DST."""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest

from radsched_engine.integrations.sms import MAX_BODY
from radsched_engine.notify.quiet import held_until, opens_at
from radsched_engine.notify.templates import (
    DEFAULT_TEMPLATES,
    PLACEHOLDERS,
    TextFacts,
    check_templates,
    placeholders_of,
    prep_from_findings,
    render,
)
from radsched_engine.rules.model import Finding

NY = ZoneInfo("America/New_York")
PARIS = ZoneInfo("Europe/Paris")


def text(event: str, facts: TextFacts, tz=NY) -> str:
    return render(DEFAULT_TEMPLATES[event], facts, tz=tz, clinic="Clinic", time_format="%a %d %b %H:%M")


def test_local_time_is_the_facility_zone_across_dst() -> None:
    winter = TextFacts(datetime(2026, 12, 15, 14, 0, tzinfo=UTC), "MRI brain", "MR2")
    summer = TextFacts(datetime(2026, 7, 15, 13, 0, tzinfo=UTC), "MRI brain", "MR2")
    assert text("S12", winter) == ("Clinic: your MRI brain is booked for Tue 15 Dec 09:00 at MR2. "
                                   "Reply STOP to opt out.")
    assert "Wed 15 Jul 09:00" in text("S12", summer)
    assert "Tue 15 Dec 15:00" in text("S13", winter, tz=PARIS)


def test_missing_location_exam_and_prep_leave_no_gaps() -> None:
    facts = TextFacts(datetime(2026, 12, 15, 14, 0, tzinfo=UTC))
    assert text("S12", facts) == ("Clinic: your appointment is booked for Tue 15 Dec 09:00. "
                                  "Reply STOP to opt out.")


def test_prep_is_added_and_overlong_texts_are_cut_to_twilio_limit() -> None:
    facts = TextFacts(datetime(2026, 12, 15, 14, 0, tzinfo=UTC), "CT", "",
                      ("Drink 1 l of water.", "No metformin"))
    assert "09:00. Preparation: Drink 1 l of water. No metformin. Reply STOP" in text("S12", facts)
    long = TextFacts(None, "CT", "", ("x" * 3000,))
    body = text("S12", long)
    assert len(body) == MAX_BODY and body.endswith("…") and "the booked time" in body


def test_every_default_template_uses_known_placeholders() -> None:
    assert check_templates(DEFAULT_TEMPLATES) is None
    for template in DEFAULT_TEMPLATES.values():
        assert set(placeholders_of(template)) <= set(PLACEHOLDERS)


def test_prep_from_findings_takes_info_prep_only_once() -> None:
    findings = [
        Finding("PREP-INSTRUCTIONS", "info", "prep", details={"prep": "Fast 6 hours"}),
        {"rule": "PREP-INSTRUCTIONS", "severity": "info", "details": {"prep": "Fast 6 hours"}},
        {"rule": "X", "severity": "block", "details": {"prep": "not this"}},
        {"rule": "Y", "severity": "info", "details": {}},
        MappingProxyType({"severity": "info", "details": MappingProxyType({"prep": "No metal"})}),
    ]
    assert prep_from_findings(findings) == ("Fast 6 hours", "No metal")
    assert prep_from_findings(None) == ()


@pytest.mark.parametrize(("local", "expected"), [
    ("2026-11-20 22:30", "2026-11-21 08:00"),      # after start, before midnight
    ("2026-11-21 02:00", "2026-11-21 08:00"),      # after midnight
    ("2026-11-21 08:00", None),                    # window just ended
    ("2026-11-21 12:00", None),
    ("2026-11-21 21:00", "2026-11-22 08:00"),
])
def test_quiet_window_across_midnight(local: str, expected: str | None) -> None:
    now = datetime.fromisoformat(local).replace(tzinfo=NY)
    got = opens_at(now, "21:00", "08:00", NY)
    assert (got.strftime("%Y-%m-%d %H:%M") if got else None) == expected


def test_quiet_window_within_a_day_and_across_dst() -> None:
    assert opens_at(datetime(2026, 11, 21, 13, 0, tzinfo=NY), "12:00", "14:00", NY) == datetime(
        2026, 11, 21, 14, 0, tzinfo=NY)
    assert opens_at(datetime(2026, 11, 21, 15, 0, tzinfo=NY), "12:00", "14:00", NY) is None
    # The night clocks go back (1 Nov 2026): the window still ends at 08:00 local (EST).
    end = opens_at(datetime(2026, 11, 1, 5, 0, tzinfo=UTC), "21:00", "08:00", NY)
    assert end is not None and end.astimezone(UTC) == datetime(2026, 11, 1, 13, 0, tzinfo=UTC)


def test_held_until_tolerates_missing_or_bad_settings() -> None:
    now = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)
    assert held_until(now, None) is None
    assert held_until(now, {"start": "21:00"}) is None
    assert held_until(now, {"start": "21:00", "end": "08:00", "tz": "Nowhere/City"}) is None
    assert held_until(now, {"start": "21:00", "end": "08:00", "tz": "UTC"}) == datetime(
        2026, 11, 21, 8, 0, tzinfo=ZoneInfo("UTC"))
