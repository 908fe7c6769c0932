"""Properties over random schedules: no crash, valid findings, inactive bookings never conflict, symmetry."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from radsched_engine.rules import Booking, RuleSet
from radsched_engine.rules.model import INACTIVE, RULE_IDS, SEVERITIES

from .helpers import NOW, T0

RULES = RuleSet()
CODES = ["74177", "74240", "70553", "78306", "78452", "77080", "79005", "78815", "93015", "76700",
         "71250", "74270", "78012", "ZZ9", ""]
TEXTS = ["", "CT ABD/PELVIS W CONTRAST", "MRI BRAIN W/WO UNDER ANESTHESIA", "BARIUM SWALLOW", "DEXA",
         "NM THYROID UPTAKE", "PET/CT FDG", "office visit", "\x00\u00e9\u2603 weird"]
STATUSES = ["booked", "pending", "waitlist", "started", "complete", "cancelled", "deleted", "noshow", "dc",
            "overbook", "blocked"]


@st.composite
def bookings(draw: st.DrawFn, key: str) -> Booking:
    start = T0 + timedelta(minutes=draw(st.integers(-60 * 24 * 50, 60 * 24 * 50)))
    minutes = draw(st.integers(0, 300))
    procedures = tuple((draw(st.sampled_from(CODES)), draw(st.sampled_from(TEXTS)), "CPT")
                       for _ in range(draw(st.integers(0, 2))))
    facts = draw(st.sampled_from([{}, {"egfr": 20}, {"egfr": "n/a", "egfr_date": "yesterday"},
                                  {"implants": ["pacemaker", {"type": 5}]}, {"dialysis": "yes"},
                                  {"pregnancy_status": "unknown", "pregnancy_test_date": 17}]))
    return Booking(
        key, draw(st.sampled_from(["H|1", "H|2", "H|", "|"])), start, start + timedelta(minutes=minutes),
        draw(st.sampled_from(STATUSES)), procedures,
        tuple(draw(st.lists(st.sampled_from(["CT1", "MR1", "NM1", ""]), max_size=2))),
        tuple(draw(st.lists(st.tuples(st.sampled_from(["T1", "R1", ""]),
                                      st.sampled_from(["TECH", "RADIOLOGIST", "", "ANES"])), max_size=2))),
        draw(st.sampled_from("SARPTx")), draw(st.sampled_from(["F", "M", ""])),
        draw(st.sampled_from([None, 5, 30, 70])), facts, draw(st.sampled_from(["", "", "G1"])))


@st.composite
def schedules(draw: st.DrawFn) -> tuple[Booking, list[Booking]]:
    count = draw(st.integers(0, 8))
    return draw(bookings("C")), [draw(bookings(f"O{i}")) for i in range(count)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules())
def test_random_schedules_give_valid_findings(schedule: tuple[Booking, list[Booking]]) -> None:
    cand, others = schedule
    findings = RULES.evaluate(cand, others, NOW)
    keys = {o.key for o in others if o.status not in INACTIVE}
    for f in findings:
        assert f.rule in RULE_IDS and f.severity in SEVERITIES
        assert f.other is None or f.other in keys
        assert not (cand.tentative and f.severity == "block")
    if cand.status in INACTIVE:
        assert findings == []
    ranks = [SEVERITIES.index(f.severity) for f in findings]
    assert ranks == sorted(ranks, reverse=True)


@settings(max_examples=200, deadline=None)
@given(bookings("A"), bookings("B"))
def test_room_overlap_is_symmetric_for_routine_bookings(a: Booking, b: Booking) -> None:
    def clash(x: Booking, y: Booking) -> bool:
        return any(f.rule == "RES-ROOM-OVERLAP" for f in RULES.evaluate(x, [y], NOW))
    if "S" not in (a.priority, b.priority):
        assert clash(a, b) == clash(b, a)
