"""Safety gates F1-F5 and the S11 prep instructions; each gate stays quiet without its facts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from radsched_engine.rules import Booking, RulesConfig, Thresholds

from .helpers import NOW, T0, bk, of, run, severities

F1, F2, F3, F4, F5, PREP = ("MRI-IMPLANT-SCREENING", "CONTRAST-RENAL-FUNCTION", "METFORMIN-IODINATED",
                            "PREGNANCY-STATUS", "SEDATION-ANESTHESIA-SLOT", "PREP-INSTRUCTIONS")


def mr(facts: dict[str, object] | None = None, staff: tuple[tuple[str, str], ...] = ()) -> Booking:
    return bk("MR", 0, 45, codes=("70551",), rooms=("MR1",), staff=staff, facts=facts)


# ---------------------------------------------------------------- F1
def test_pacemaker_without_clearance_blocks_mri() -> None:
    found = of(run(mr({"implants": ["Pacemaker"]})), F1)
    assert [f.severity for f in found] == ["block"]
    assert "cardiac device" in found[0].message


def test_mr_conditional_cleared_device_needs_a_device_programmer() -> None:
    device = {"implants": [{"type": "ICD", "mr_status": "conditional", "cleared": True}]}
    assert severities(run(mr(device)), F1) == ["warn"]
    assert of(run(mr(device, staff=(("C9", "DEVICE"),))), F1) == []


def test_mr_safe_implant_and_unsafe_implant() -> None:
    assert of(run(mr({"implants": [{"type": "stent", "mr_status": "safe"}]})), F1) == []
    assert severities(run(mr({"implants": [{"type": "aneurysm clip", "mr_status": "unsafe",
                                            "cleared": True}]})), F1) == ["block"]


def test_passive_implant_without_clearance_warns() -> None:
    assert severities(run(mr({"implants": ["hip prosthesis"]})), F1) == ["warn"]
    assert of(run(mr({"implants": ["hip prosthesis"], "mr_cleared": True})), F1) == []


def test_implants_only_matter_for_mr() -> None:
    assert of(run(bk("CT", 0, codes=("71250",), facts={"implants": ["pacemaker"]})), F1) == []
    assert of(run(mr()), F1) == []                                    # no implant facts: quiet


# ---------------------------------------------------------------- F2 / F3
def ct(facts: dict[str, object], code: str = "74177", age: int | None = 40) -> Booking:
    return bk("CT", 0, codes=(code,), age=age, facts=facts)


def test_low_egfr_before_iodinated_contrast_warns_never_blocks() -> None:
    assert severities(run(ct({"egfr": 25, "egfr_date": (T0 - timedelta(days=1)).date()})), F2) == ["warn"]
    assert severities(run(ct({"egfr": 30, "egfr_date": T0 - timedelta(days=1)})), F2) == []
    assert severities(run(ct({"egfr": 55, "aki": True})), F2) == ["warn"]


def test_stale_or_missing_egfr_for_at_risk_patients() -> None:
    old = (T0 - timedelta(days=40)).isoformat()
    recent = (T0 - timedelta(days=10)).isoformat()
    assert severities(run(ct({"egfr": 70, "egfr_date": old}, age=70)), F2) == ["warn"]
    assert severities(run(ct({"egfr": 70, "egfr_date": recent}, age=70)), F2) == []
    inpatient = {"egfr": 70, "egfr_date": recent, "patient_class": "I"}
    assert severities(run(ct(inpatient, age=70)), F2) == ["warn"]
    assert severities(run(ct({"egfr": None, "diabetes": True})), F2) == ["warn"]
    assert severities(run(ct({"egfr": 70, "egfr_date": old})), F2) == []          # 40 years, no risk


def test_renal_gate_is_quiet_without_renal_facts() -> None:
    assert of(run(ct({}, age=80)), F2) == []
    assert of(run(ct({"diabetes": True}, age=80)), F2) == []


def test_gadolinium_only_cares_about_severe_impairment() -> None:
    assert severities(run(ct({"egfr": 25}, code="70553")), F2) == ["warn"]
    assert of(run(ct({"egfr": 45, "egfr_date": T0 - timedelta(days=90)}, code="70553", age=80)), F2) == []


def test_metformin_instruction() -> None:
    assert severities(run(ct({"egfr": 25, "metformin": True})), F3) == ["warn"]
    assert of(run(ct({"egfr": 50, "metformin": True})), F3) == []
    assert severities(run(ct({"egfr": 50, "metformin": "yes"}, code="75625")), F3) == ["warn"]  # arterial
    assert of(run(ct({"egfr": 25, "metformin": True}, code="70553")), F3) == []              # GBCA


# ---------------------------------------------------------------- F4
def woman(code: str, facts: dict[str, object] | None = None, *, hours: float = 0, age: int = 30,
          sex: str = "F") -> Booking:
    return bk("X", hours, codes=(code,), sex=sex, age=age,
              facts={"pregnancy_status": "unknown"} if facts is None else facts)


def test_high_dose_exam_needs_a_recent_negative_test() -> None:
    now = T0 - timedelta(hours=48)
    assert severities(run(woman("74177"), now=now), F4) == ["block"]
    tested = {"pregnancy_test_result": "negative", "pregnancy_test_date": (T0 - timedelta(hours=24))}
    assert of(run(woman("74177", tested), now=now), F4) == []
    too_old = {"pregnancy_test_result": "negative", "pregnancy_test_date": T0 - timedelta(hours=73)}
    assert severities(run(woman("74177", too_old), now=now), F4) == ["block"]


def test_far_future_high_dose_exam_gets_a_reminder_not_a_block() -> None:
    assert severities(run(woman("74177"), now=T0 - timedelta(days=10)), F4) == ["warn"]


def test_waiver_and_positive_status() -> None:
    now = T0 - timedelta(hours=1)
    assert severities(run(woman("74177", {"pregnancy_waiver": True}), now=now), F4) == ["warn"]
    assert severities(run(woman("72100", {"pregnancy_status": "positive"}), now=now), F4) == ["block"]


def test_radioiodine_therapy_needs_a_test() -> None:
    assert severities(run(woman("79005"), now=T0 - timedelta(hours=2)), F4) == ["block"]


def test_low_dose_exam_warns_only_when_status_unknown() -> None:
    assert severities(run(woman("72100")), F4) == ["warn"]                          # lumbar XR
    assert of(run(woman("72100", {"pregnancy_status": "negative"})), F4) == []
    assert severities(run(woman("70553")), F4) == ["warn"]                          # GBCA MRI
    no_gbca = RulesConfig(thresholds=Thresholds(pregnancy_gbca=False))
    assert of(run(woman("70553"), config=no_gbca), F4) == []


@pytest.mark.parametrize(("code", "age", "sex"), [
    ("71046", 30, "F"),      # chest radiograph: exempt
    ("73610", 30, "F"),      # extremity radiograph
    ("70450", 30, "F"),      # head CT
    ("77067", 30, "F"),      # mammography
    ("74177", 55, "F"),      # outside 12-50
    ("74177", 11, "F"),
    ("74177", 30, "M"),
])
def test_pregnancy_gate_exemptions(code: str, age: int, sex: str) -> None:
    assert of(run(woman(code, age=age, sex=sex), now=T0 - timedelta(hours=1)), F4) == []


def test_pregnancy_gate_is_quiet_without_facts_unless_configured() -> None:
    assert of(run(woman("74177", {}), now=T0 - timedelta(hours=1)), F4) == []
    strict = RulesConfig(thresholds=Thresholds(pregnancy_needs_facts=False))
    assert severities(run(woman("74177", {}), now=T0 - timedelta(hours=1), config=strict), F4) == ["block"]
    assert of(run(bk("X", 0, codes=("74177",), sex="F"), config=strict), F4) == []   # age unknown


# ---------------------------------------------------------------- F5
SEDATION_TEXT = "MRI BRAIN WO UNDER GENERAL ANESTHESIA"


def test_sedation_case_needs_sedation_staff() -> None:
    alone = bk("S", 0, 60, text=SEDATION_TEXT, codes=(), rooms=("MR1",))
    assert severities(run(alone), F5) == ["block"]
    covered = bk("S", 0, 60, text=SEDATION_TEXT, codes=(), rooms=("MR1",), staff=(("A1", "ANES"),))
    assert of(run(covered), F5) == []


def test_sedation_recovery_buffer() -> None:
    case = bk("S", 0, 60, patient="H|1", text=SEDATION_TEXT, codes=(), staff=(("A1", "CRNA"),))
    soon = bk("N", 1 + 20 / 60, patient="H|1", codes=("71046",), rooms=("XR1",))
    later = bk("N", 1.5, patient="H|1", codes=("71046",), rooms=("XR1",))
    assert [(f.severity, f.other) for f in of(run(case, soon), F5)] == [("warn", "N")]
    assert of(run(case, later), F5) == []


def test_without_sedation_is_not_a_sedation_case() -> None:
    assert of(run(bk("S", 0, 60, text="MRI BRAIN WITHOUT SEDATION", codes=())), F5) == []


# ---------------------------------------------------------------- S11
def test_prep_instructions_are_info_with_the_text() -> None:
    found = of(run(bk("US", 0, codes=("76700",))), PREP)
    assert [f.severity for f in found] == ["info"]
    assert "6 hours" in str(found[0].details["prep"])


def test_prep_is_deduplicated_and_absent_for_plain_films() -> None:
    assert len(of(run(bk("US", 0, 60, codes=("76700", "76705"))), PREP)) == 1
    assert of(run(bk("XR", 0, codes=("71046",))), PREP) == []


def test_prep_for_fdg_pet_mentions_fasting_and_exercise() -> None:
    text = str(of(run(bk("PET", 0, 60, codes=("78815",))), PREP)[0].details["prep"])
    assert "6 hours" in text and "exercise" in text


def test_dxa_and_mammography_prep() -> None:
    assert "calcium" in str(of(run(bk("D", 0, codes=("77080",))), PREP)[0].details["prep"])
    assert "deodorant" in str(of(run(bk("M", 0, codes=("77067",))), PREP)[0].details["prep"])


def test_nm_prep_mentions_the_dose() -> None:
    text = str(of(run(bk("B", 0, 60, codes=("78306",)), now=NOW), PREP)[0].details["prep"])
    assert "2 to 4 hours" in text and "dose" in text
