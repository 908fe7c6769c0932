"""R4 duration, R5 calendars (facility zone, DST, closures), R6 wait targets and O1 radiopharmacy cut-off."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from radsched_engine.rules import (
    Booking,
    CalendarConfig,
    Closure,
    ResourceCalendar,
    RulesConfig,
    RuleSet,
    WeeklyHours,
)

from .helpers import bk, of, run, severities

DURATION, CALENDAR, TARGET, LEAD = ("DURATION-MISMATCH", "OUTSIDE-CALENDAR", "PRIORITY-TARGET-MISSED",
                                    "RADIOPHARMACEUTICAL-LEAD-TIME")
NY = ZoneInfo("America/New_York")
ALL_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


# ---------------------------------------------------------------- R4
@pytest.mark.parametrize(("minutes", "expected"), [
    (15, ["warn"]),      # below the 20 min minimum of 74177
    (20, []),            # exactly the minimum
    (60, []),            # exactly twice the typical 30 min
    (61, ["info"]),      # more than twice
])
def test_duration_against_the_procedure_table(minutes: int, expected: list[str]) -> None:
    assert severities(run(bk("A", 0, minutes, codes=("74177",))), DURATION) == expected


def test_missing_duration_is_a_warning() -> None:
    assert severities(run(bk("A", 0, 0, codes=("70450",))), DURATION) == ["warn"]


def test_unknown_procedure_has_no_duration_rule() -> None:
    assert of(run(bk("A", 0, 5, codes=("ZZZ999",))), DURATION) == []


def test_several_procedures_use_the_longest_minimum() -> None:
    # 70553 needs 35 min, 71250 10 min: one 30 min slot for both is too short.
    assert severities(run(bk("A", 0, 30, codes=("71250", "70553"))), DURATION) == ["warn"]


# ---------------------------------------------------------------- R5
def _calendars(**kwargs: object) -> RuleSet:
    return RuleSet(RulesConfig(facility_zone="America/New_York",
                               calendars=CalendarConfig(enabled=True, **kwargs)))  # type: ignore[arg-type]


def _local(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=NY)


def booking(start: datetime, minutes: int = 30, *, priority: str = "R",
            rooms: tuple[str, ...] = ("CT1",), code: str = "71250") -> Booking:
    return Booking("A", "H|1", start, start + timedelta(minutes=minutes), "booked", ((code, "", ""),),
                   rooms, (), priority)


SEVEN_TO_SEVEN = ResourceCalendar(hours=[WeeklyHours(days=ALL_DAYS, start="07:00", end="19:00")])


def test_calendars_are_off_by_default() -> None:
    night = booking(_local(2026, 3, 10, 3))
    assert of(RuleSet().evaluate(night, [], night.start), CALENDAR) == []


def test_inside_and_outside_opening_hours() -> None:
    rules = _calendars(modalities={"CT": SEVEN_TO_SEVEN})
    ok = booking(_local(2026, 3, 10, 18, 30))             # ends exactly at 19:00
    late = booking(_local(2026, 3, 10, 18, 31))
    early = booking(_local(2026, 3, 10, 6, 45))
    assert of(rules.evaluate(ok, [], ok.start), CALENDAR) == []
    assert severities(rules.evaluate(late, [], late.start), CALENDAR) == ["warn"]
    assert severities(rules.evaluate(early, [], early.start), CALENDAR) == ["warn"]


def test_stat_outside_hours_is_info() -> None:
    rules = _calendars(modalities={"CT": SEVEN_TO_SEVEN})
    night = booking(_local(2026, 3, 10, 2), priority="S")
    assert severities(rules.evaluate(night, [], night.start), CALENDAR) == ["info"]


@pytest.mark.parametrize(("utc_day", "expected"), [
    (7, ["warn"]),   # Sat 7 Mar 2026, EST: 11:30Z is 06:30 local, before opening
    (8, []),         # Sun 8 Mar, DST began at 02:00: 11:30Z is 07:30 EDT
    (9, []),         # Mon 9 Mar, EDT
])
def test_opening_hours_follow_the_spring_dst_change(utc_day: int, expected: list[str]) -> None:
    rules = _calendars(modalities={"CT": SEVEN_TO_SEVEN})
    cand = booking(datetime(2026, 3, utc_day, 11, 30, tzinfo=ZoneInfo("UTC")))
    assert severities(rules.evaluate(cand, [], cand.start), CALENDAR) == expected


@pytest.mark.parametrize(("utc", "expected"), [
    (datetime(2026, 10, 31, 22, 30), []),          # Sat 31 Oct, EDT: 18:30 local
    (datetime(2026, 10, 31, 23, 30), ["warn"]),    # 19:30 local
    (datetime(2026, 11, 1, 23, 30), []),           # Sun 1 Nov, EST after the change: 18:30 local
])
def test_opening_hours_follow_the_autumn_dst_change(utc: datetime, expected: list[str]) -> None:
    rules = _calendars(modalities={"CT": SEVEN_TO_SEVEN})
    cand = booking(utc.replace(tzinfo=ZoneInfo("UTC")))
    assert severities(rules.evaluate(cand, [], cand.start), CALENDAR) == expected


def test_overnight_block_and_adjacent_blocks_cover_a_booking() -> None:
    night = ResourceCalendar(hours=[WeeklyHours(days=("fri",), start="22:00", end="06:00"),
                                    WeeklyHours(days=("sat",), start="06:00", end="12:00")])
    rules = _calendars(resources={"CT1": night})
    inside = booking(_local(2026, 3, 14, 1))               # Saturday 01:00, from Friday's block
    across = booking(_local(2026, 3, 14, 5, 30), 60)       # 05:30-06:30 spans both blocks
    outside = booking(_local(2026, 3, 14, 11, 45), 30)     # runs past noon
    assert of(rules.evaluate(inside, [], inside.start), CALENDAR) == []
    assert of(rules.evaluate(across, [], across.start), CALENDAR) == []
    assert severities(rules.evaluate(outside, [], outside.start), CALENDAR) == ["warn"]


def test_midnight_end_time() -> None:
    rules = _calendars(resources={"CT1": ResourceCalendar(
        hours=[WeeklyHours(days=ALL_DAYS, start="12:00", end="24:00")])})
    late = booking(_local(2026, 3, 10, 23, 30))
    assert of(rules.evaluate(late, [], late.start), CALENDAR) == []


def test_holiday_closure_blocks_and_stat_gets_info() -> None:
    cal = ResourceCalendar(closures=[Closure(start="2026-12-25", reason="holiday")])
    rules = _calendars(resources={"CT1": cal})
    xmas = booking(_local(2026, 12, 25, 10))
    found = of(rules.evaluate(xmas, [], xmas.start), CALENDAR)
    assert [f.severity for f in found] == ["block"] and found[0].details["reason"] == "holiday"
    stat = booking(_local(2026, 12, 25, 23, 45), priority="S")
    assert severities(rules.evaluate(stat, [], stat.start), CALENDAR) == ["info"]
    boxing_day = booking(_local(2026, 12, 26, 0, 0))
    assert of(rules.evaluate(boxing_day, [], boxing_day.start), CALENDAR) == []


def test_downtime_with_exclusive_end() -> None:
    cal = ResourceCalendar(closures=[Closure(start="2026-03-10T08:00", end="2026-03-10T12:00",
                                             reason="maintenance")])
    rules = _calendars(resources={"CT1": cal})
    during = booking(_local(2026, 3, 10, 11, 45))
    after = booking(_local(2026, 3, 10, 12, 0))
    before = booking(_local(2026, 3, 10, 7, 30))            # ends exactly at 08:00
    assert severities(rules.evaluate(during, [], during.start), CALENDAR) == ["block"]
    assert of(rules.evaluate(after, [], after.start), CALENDAR) == []
    assert of(rules.evaluate(before, [], before.start), CALENDAR) == []


def test_weekly_qa_block() -> None:
    cal = ResourceCalendar(hours=SEVEN_TO_SEVEN.hours,
                           blocked=[WeeklyHours(days=("tue",), start="07:00", end="08:00")])
    rules = _calendars(resources={"CT1": cal})
    qa = booking(_local(2026, 3, 10, 7, 30))                # a Tuesday
    wednesday = booking(_local(2026, 3, 11, 7, 30))
    assert severities(rules.evaluate(qa, [], qa.start), CALENDAR) == ["block"]
    assert of(rules.evaluate(wednesday, [], wednesday.start), CALENDAR) == []


def test_resource_calendar_wins_over_modality_and_default() -> None:
    closed = ResourceCalendar(hours=[WeeklyHours(days=("mon",), start="08:00", end="09:00")])
    rules = _calendars(resources={"CT-ED": ResourceCalendar()}, modalities={"CT": closed},
                       default=closed)
    night = booking(_local(2026, 3, 10, 3), rooms=("CT-ED",))
    other_ct = booking(_local(2026, 3, 10, 3), rooms=("CT2",))
    no_room = booking(_local(2026, 3, 10, 3), rooms=(), code="76700")   # US: falls to the default
    assert of(rules.evaluate(night, [], night.start), CALENDAR) == []
    assert severities(rules.evaluate(other_ct, [], other_ct.start), CALENDAR) == ["warn"]
    assert severities(rules.evaluate(no_room, [], no_room.start), CALENDAR) == ["warn"]


def test_bad_calendar_configuration_is_reported() -> None:
    with pytest.raises(ValueError, match=r"calendars.resources.CT1.hours\[0\].start"):
        _calendars(resources={"CT1": ResourceCalendar(hours=[WeeklyHours(start="8am")])})
    with pytest.raises(ValueError, match="unknown day"):
        _calendars(resources={"CT1": ResourceCalendar(hours=[WeeklyHours(days=("funday",))])})
    with pytest.raises(ValueError, match="unknown time zone"):
        RuleSet(RulesConfig(facility_zone="Mars/Olympus"))


# ---------------------------------------------------------------- R6
def test_routine_wait_beyond_target() -> None:
    late = bk("A", 0, facts={"ordered_at": (bk("x", -30 * 24).start).isoformat()})
    fine = bk("A", 0, facts={"ordered_at": bk("x", -27 * 24).start})
    assert severities(run(late), TARGET) == ["warn"]
    assert of(run(fine), TARGET) == []
    assert of(run(bk("A", 0)), TARGET) == []                  # no order time: quiet


def test_stat_target_is_a_day() -> None:
    assert severities(run(bk("A", 0, priority="S", facts={"ordered_at": bk("x", -25).start})),
                      TARGET) == ["warn"]
    assert of(run(bk("A", 0, priority="S", facts={"ordered_at": bk("x", -24).start})), TARGET) == []


def test_preop_must_finish_before_surgery() -> None:
    assert severities(run(bk("A", 0, 60, priority="P", facts={"surgery_at": bk("x", 0.5).start})),
                      TARGET) == ["warn"]
    assert of(run(bk("A", 0, 60, priority="P", facts={"surgery_at": bk("x", 1).start})), TARGET) == []


# ---------------------------------------------------------------- O1
def _nm(start: datetime) -> Booking:
    return booking(start, 60, rooms=("NM1",), code="78306")


def test_nm_booked_after_the_radiopharmacy_cutoff() -> None:
    rules = RuleSet(RulesConfig(facility_zone="America/New_York"))
    wednesday = _nm(_local(2026, 3, 11, 10))
    assert of(rules.evaluate(wednesday, [], _local(2026, 3, 10, 13, 59)), LEAD) == []
    assert of(rules.evaluate(wednesday, [], _local(2026, 3, 10, 14, 0)), LEAD) == []
    assert severities(rules.evaluate(wednesday, [], _local(2026, 3, 10, 14, 1)), LEAD) == ["warn"]


def test_monday_cutoff_is_the_previous_friday() -> None:
    rules = RuleSet(RulesConfig(facility_zone="America/New_York"))
    monday = _nm(_local(2026, 3, 16, 9))
    assert severities(rules.evaluate(monday, [], _local(2026, 3, 14, 9)), LEAD) == ["warn"]
    assert of(rules.evaluate(monday, [], _local(2026, 3, 13, 9)), LEAD) == []


def test_cutoff_ignores_past_bookings_and_non_nm() -> None:
    rules = RuleSet(RulesConfig(facility_zone="America/New_York"))
    exam = _nm(_local(2026, 3, 11, 10))
    assert of(rules.evaluate(exam, [], exam.start + timedelta(hours=1)), LEAD) == []
    ct = booking(_local(2026, 3, 11, 10))
    assert of(rules.evaluate(ct, [], ct.start - timedelta(hours=1)), LEAD) == []
