"""Sequencing rules S1-S10 and R8 for one patient's bookings, in both directions and at the boundaries."""

from __future__ import annotations

import pytest

from radsched_engine.rules import Booking

from .helpers import bk, run, severities

S1, S2, S3, S4, S5 = ("SEQ-BARIUM-THEN-CT-ABD", "SEQ-GI-FLUORO-ORDER", "SEQ-IODINE-THEN-THYROID-NM",
                      "SEQ-NM-RESIDUAL-ACTIVITY", "SEQ-CONTRAST-BEFORE-DXA")
S6, S7, S8, S9, S10 = ("SEQ-IODINE-IODINE-GAP", "SEQ-GBCA-GBCA-GAP", "SEQ-IODINE-GBCA-SAME-DAY",
                       "SEQ-STRESS-BEFORE-FDG-PET", "PREP-FASTING-COLLISION")
DUP = "DUPLICATE-EXAM"


def p(key: str, hours: float, code: str = "", *, text: str = "", minutes: float = 30,
      room: str | None = None, **kw: object) -> Booking:
    """A booking of patient H|1 in its own room."""
    return bk(key, hours, minutes, patient="H|1", codes=(code,) if code else (), text=text,
              rooms=(room or f"R-{key}",), **kw)  # type: ignore[arg-type]


def both_ways(first: Booking, second: Booking, rule: str) -> tuple[list[str], list[str]]:
    """Severities when the later exam is the candidate, and when the earlier one is."""
    return severities(run(second, first), rule), severities(run(first, second), rule)


# ---------------------------------------------------------------- S1
@pytest.mark.parametrize(("gap", "expected"), [(24, ["warn"]), (71.9, ["warn"]), (72, [])])
def test_barium_then_ct_abdomen(gap: float, expected: list[str]) -> None:
    barium, ct = p("BA", 0, "74240"), p("CT", gap, "74177")
    assert both_ways(barium, ct, S1) == (expected, expected)


def test_ct_first_then_barium_is_the_right_order() -> None:
    assert both_ways(p("CT", 0, "74177"), p("BA", 24, "74240"), S1) == ([], [])


def test_barium_enema_counts_and_chest_ct_does_not() -> None:
    assert severities(run(p("CT", 24, "74176"), p("BE", 0, "74270")), S1) == ["warn"]
    assert severities(run(p("CT", 24, "71260"), p("BA", 0, "74240")), S1) == []


def test_barium_by_keyword_text() -> None:
    found = run(p("CT", 10, text="CT ABD/PELVIS W CONTRAST"), p("BA", 0, text="BARIUM SWALLOW"))
    assert severities(found, S1) == ["warn"]


# ---------------------------------------------------------------- S2
def test_gi_studies_out_of_order_get_info() -> None:
    assert both_ways(p("UGI", 0, "74240"), p("BE", 48, "74270"), S2) == (["info"], ["info"])
    assert severities(run(p("KUB", 24, "74018"), p("UGI", 0, "74240")), S2) == ["info"]


def test_enema_shortly_before_ugi_gets_info() -> None:
    assert severities(run(p("UGI", 12, "74240"), p("BE", 0, "74270")), S2) == ["info"]
    assert severities(run(p("UGI", 24, "74240"), p("BE", 0, "74270")), S2) == []


def test_preferred_order_and_ultrasound_after_ugi_are_fine() -> None:
    assert severities(run(p("IVU", 24, "74400"), p("KUB", 0, "74018")), S2) == []
    assert severities(run(p("US", 2, "76700"), p("UGI", 0, "74240")), S2) == []


def test_gi_studies_weeks_apart_are_separate_workups() -> None:
    assert severities(run(p("BE", 15 * 24, "74270"), p("UGI", 0, "74240")), S2) == []


# ---------------------------------------------------------------- S3
@pytest.mark.parametrize(("code", "expected"), [("78012", "warn"), ("78013", "warn"), ("79005", "block")])
def test_iodine_before_thyroid(code: str, expected: str) -> None:
    ct, thyroid = p("CT", 0, "74177"), p("NM", 30 * 24, code)
    assert both_ways(ct, thyroid, S3) == ([expected], [expected])


def test_iodine_thyroid_window_boundary_and_reverse_order() -> None:
    assert severities(run(p("NM", 42 * 24, "78012"), p("CT", 0, "74177")), S3) == []
    assert severities(run(p("NM", 41.9 * 24, "78012"), p("CT", 0, "74177")), S3) == ["warn"]
    assert severities(run(p("CT", 24, "74177"), p("NM", 0, "78012")), S3) == []
    assert severities(run(p("NM", 24, "78012"), p("CT", 0, "74176")), S3) == []   # no contrast


# ---------------------------------------------------------------- S4
def test_residual_tc99m_activity() -> None:
    bone, mpi = p("BONE", 0, "78306"), p("MPI", 20, "78452")
    assert both_ways(bone, mpi, S4) == (["warn"], ["warn"])
    assert severities(run(p("MPI", 24, "78452"), bone), S4) == []


def test_low_activity_first_study_may_be_followed_at_once() -> None:
    assert severities(run(p("MPI", 1, "78452"), p("Q", 0, "78580")), S4) == []
    assert severities(run(p("Q", 1, "78580"), p("MPI", 0, "78452")), S4) == ["warn"]


def test_long_lived_isotopes_have_their_own_window() -> None:
    wbc = p("WBC", 0, text="NM INDIUM WBC SCAN")
    assert severities(run(p("WBC2", 5 * 24, text="IN-111 LABELED WBC"), wbc), S4) == ["warn"]
    assert severities(run(p("WBC2", 7 * 24, text="IN-111 LABELED WBC"), wbc), S4) == []
    assert severities(run(p("BONE", 24, "78306"), wbc), S4) == []            # other isotope


# ---------------------------------------------------------------- S5
@pytest.mark.parametrize(("first", "gap", "expected"), [
    ("74177", 3 * 24, ["warn"]), ("74240", 6 * 24, ["warn"]), ("78306", 5 * 24, ["warn"]),
    ("74177", 7 * 24, []), ("71250", 24, []),
])
def test_contrast_or_tracer_before_dxa(first: str, gap: float, expected: list[str]) -> None:
    assert both_ways(p("X", 0, first), p("DXA", gap, "77080"), S5) == (expected, expected)


def test_dxa_first_is_fine() -> None:
    assert severities(run(p("CT", 2, "74177"), p("DXA", 0, "77080")), S5) == []


# ---------------------------------------------------------------- S6
@pytest.mark.parametrize(("gap", "expected"), [(3, ["warn"]), (4, ["info"]), (11.9, ["info"]), (12, [])])
def test_iodine_iodine_gap(gap: float, expected: list[str]) -> None:
    assert both_ways(p("CT1", 0, "71260"), p("CT2", gap, "74177"), S6) == (expected, expected)


def test_iodine_iodine_gap_with_low_egfr_blocks_unless_stat() -> None:
    low = {"egfr": 25}
    assert severities(run(p("CT2", 24, "74177", facts=low), p("CT1", 0, "71260")), S6) == ["block"]
    assert severities(run(p("CT2", 48, "74177", facts=low), p("CT1", 0, "71260")), S6) == []
    stat = p("CT2", 24, "74177", facts=low, priority="S")
    assert severities(run(stat, p("CT1", 0, "71260")), S6) == ["warn"]
    # the fact may be on the stored booking rather than on the new one
    assert severities(run(p("CT2", 24, "74177"), p("CT1", 0, "71260", facts=low)), S6) == ["block"]


# ---------------------------------------------------------------- S7
def test_gbca_gbca_gap() -> None:
    assert both_ways(p("MR1", 0, "70553"), p("MR2", 10, "72158"), S7) == (["warn"], ["warn"])
    assert severities(run(p("MR2", 24, "72158"), p("MR1", 0, "70553")), S7) == []


def test_gbca_gap_with_dialysis_blocks_for_a_week_unless_urgent() -> None:
    dialysis = {"dialysis": True}
    assert severities(run(p("MR2", 72, "72158", facts=dialysis), p("MR1", 0, "70553")), S7) == ["block"]
    assert severities(run(p("MR2", 7 * 24, "72158", facts=dialysis), p("MR1", 0, "70553")), S7) == []
    urgent = p("MR2", 72, "72158", facts=dialysis, priority="S")
    assert severities(run(urgent, p("MR1", 0, "70553")), S7) == ["warn"]


# ---------------------------------------------------------------- S8
def test_iodine_and_gadolinium_same_day() -> None:
    assert both_ways(p("CT", 0, "74177"), p("MR", 2, "70553"), S8) == (["warn"], ["warn"])
    assert both_ways(p("MR", 0, "70553"), p("CT", 2, "74177"), S8) == (["warn"], ["warn"])
    assert severities(run(p("MR", 4, "70553"), p("CT", 0, "74177")), S8) == []


def test_iodine_and_gadolinium_with_low_egfr() -> None:
    low = {"egfr": "20"}
    assert severities(run(p("MR", 10, "70553", facts=low), p("CT", 0, "74177")), S8) == ["block"]
    assert severities(run(p("MR", 24, "70553", facts=low), p("CT", 0, "74177")), S8) == []
    urgent = p("MR", 10, "70553", facts=low, priority="S")
    assert severities(run(urgent, p("CT", 0, "74177")), S8) == ["warn"]


# ---------------------------------------------------------------- S9
def test_exercise_stress_before_fdg_pet() -> None:
    assert both_ways(p("ETT", 0, "93015"), p("PET", 20, "78815"), S9) == (["warn"], ["warn"])
    assert severities(run(p("PET", 24, "78815"), p("ETT", 0, "93015")), S9) == []
    assert severities(run(p("ETT", 2, "93015"), p("PET", 0, "78815")), S9) == []


def test_pharmacologic_stress_does_not_count() -> None:
    lexiscan = p("MPI", 0, "78452", text="NM MPI LEXISCAN")
    assert severities(run(p("PET", 20, "78815"), lexiscan), S9) == []
    assert severities(run(p("PET", 20, "78815"), p("MPI", 0, "78452")), S9) == ["warn"]


# ---------------------------------------------------------------- S10
def test_oral_contrast_inside_an_ultrasound_fasting_window() -> None:
    ct = p("CT", 0, "74177")                      # drinks from 07:00, scan 09:00-09:30
    us = p("US", 1, "76700")                      # fasting 04:00-10:00
    assert both_ways(ct, us, S10) == (["warn"], ["warn"])


def test_drinking_after_the_fasting_exam_is_fine() -> None:
    us = p("US", 0, "76700")                      # 09:00
    assert severities(run(p("CT", 2, "74177"), us), S10) == []          # drinking starts 09:00
    assert severities(run(p("CT", 1.9, "74177"), us), S10) == ["warn"]


def test_test_meal_before_a_sedation_case_blocks() -> None:
    meal = p("GE", 0, "78264", minutes=120)                       # 09:00-11:00
    sedated = p("MRI", 4, text="MRI BRAIN WO UNDER GENERAL ANESTHESIA")   # 13:00, NPO from 07:00
    assert severities(run(sedated, meal), S10) == ["block"]
    later = p("MRI", 8, text="MRI BRAIN WO UNDER GENERAL ANESTHESIA")     # NPO from 11:00
    assert severities(run(later, meal), S10) == []


# ---------------------------------------------------------------- R8
def test_duplicate_exam_within_a_week() -> None:
    assert both_ways(p("A", 0, "74177"), p("B", 3 * 24, "74177"), DUP) == (["warn"], ["warn"])
    assert severities(run(p("B", 7 * 24, "74177"), p("A", 0, "74177")), DUP) == []
    assert severities(run(p("B", 24, "74176"), p("A", 0, "74177")), DUP) == []
    assert severities(run(p("B", 24, "74177"), p("A", 0, "74177", status="cancelled")), DUP) == []


def test_completed_exams_still_count_for_sequencing() -> None:
    assert severities(run(p("CT", 24, "74177"), p("BA", 0, "74240", status="complete")), S1) == ["warn"]


def test_other_patients_exams_never_sequence() -> None:
    assert severities(run(p("CT", 24, "74177"), bk("BA", 0, codes=("74240",), patient="H|2")), S1) == []
