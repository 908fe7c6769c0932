"""Micro benchmark: µs per rule evaluation of one candidate booking against 50 others.

Run: ``/work/venv/bin/python bench/micro_rules.py [--number N] [--others K]``. Not a test: it prints
numbers only. The bookings are fictitious: one scanner day of other patients (a few overlapping the
candidate), the candidate's own patient with contrast, barium and NM exams around it, and bookings
on other rooms. Profiles are warm (cached), as they are in a running engine.
"""

from __future__ import annotations

import argparse
import timeit
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from radsched_engine.rules import (
    Booking,
    CalendarConfig,
    ResourceCalendar,
    RulesConfig,
    RuleSet,
    WeeklyHours,
)

ZONE = ZoneInfo("America/New_York")
DAY = datetime(2026, 3, 10, 7, 0, tzinfo=ZONE)
CODES = ("74177", "71250", "70450", "74176", "71260", "72193", "70553", "73721", "76700", "78306")
OWN = (("74240", -30), ("78306", -20), ("70553", 26), ("74177", -200), ("77080", 100),
       ("78452", 48), ("93015", -10), ("76700", 3))


def scenario(count: int) -> tuple[Booking, list[Booking]]:
    start = DAY + timedelta(hours=3)
    candidate = Booking(
        "F:CAND", "HOSP|P0", start, start + timedelta(minutes=30), "booked",
        (("74177", "CT ABDOMEN AND PELVIS WITH CONTRAST", "CPT"),), ("CT1",), (("T1", "TECH"),),
        "R", "F", 34, {"egfr": 72, "egfr_date": "2026-03-01"})
    others: list[Booking] = []
    for i, (code, hours) in enumerate(OWN):
        s = start + timedelta(hours=hours)
        others.append(Booking(f"F:OWN{i}", "HOSP|P0", s, s + timedelta(minutes=45), "booked",
                              ((code, "", "CPT"),), (f"ROOM{i}",)))
    i = 0
    while len(others) < count:
        s = DAY + timedelta(minutes=20 * i)
        room = "CT1" if i % 2 == 0 else f"CT{2 + i % 3}"
        others.append(Booking(f"F:{i}", f"HOSP|P{i + 1}", s, s + timedelta(minutes=30),
                              "cancelled" if i % 11 == 5 else "booked",
                              ((CODES[i % len(CODES)], "", "CPT"),), (room,),
                              ((f"T{i % 4}", "TECH"),), "R"))
        i += 1
    return candidate, others[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--number", type=int, default=20000)
    parser.add_argument("--others", type=int, default=50)
    args = parser.parse_args()
    candidate, others = scenario(args.others)
    now = DAY - timedelta(days=5)
    hours = [WeeklyHours(days=("mon", "tue", "wed", "thu", "fri"), start="07:00", end="19:00")]
    configs = {
        "default rules": RulesConfig(facility_zone="America/New_York"),
        "with calendars": RulesConfig(facility_zone="America/New_York", calendars=CalendarConfig(
            enabled=True, modalities={"CT": ResourceCalendar(hours=hours)})),
    }
    print(f"one candidate against {len(others)} others, {args.number} evaluations each")
    for label, config in configs.items():
        rules = RuleSet(config)
        findings = rules.evaluate(candidate, others, now)        # warm the profile cache
        best = min(timeit.repeat(lambda r=rules: r.evaluate(candidate, others, now),
                                 number=args.number, repeat=5))
        print(f"  {label:16s} {best / args.number * 1e6:8.1f} µs/evaluation  ({len(findings)} findings)")


if __name__ == "__main__":
    main()
