"""Configuration (overrides, disabled rules, windows, YAML), the model helpers and PHI-free findings."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from radsched_engine.config.problems import ConfigError
from radsched_engine.config.schema import parse_options
from radsched_engine.rules import (
    Booking,
    Finding,
    FindingSummary,
    ProcedureOverride,
    RulesConfig,
    RuleSet,
    Thresholds,
    enabled_rules,
    normalize_status,
    rule_id,
)
from radsched_engine.rules.model import RULES

from .helpers import NOW, T0, bk, of, run, severities

ROOM, PAT = "RES-ROOM-OVERLAP", "PAT-DOUBLE-BOOK"


def test_disable_rules_by_short_or_stable_id() -> None:
    for name in ("R1", "RES-ROOM-OVERLAP", "r1 res-room-overlap"):
        assert of(run(bk("A", 0), bk("B", 0), config=RulesConfig(disabled=(name,))), ROOM) == []


def test_only_runs_the_listed_rules() -> None:
    found = run(bk("A", 0, codes=("74177",)), bk("B", 0), config=RulesConfig(only=("R1",)))
    assert {f.rule for f in found} == {ROOM}
    assert enabled_rules(RulesConfig(only=("R1", "S3"), disabled=("S3",))) == {ROOM}
    assert len(enabled_rules(RulesConfig())) == len(RULES)


def test_severity_override_for_a_rule() -> None:
    config = RulesConfig(severity={"RES-ROOM-OVERLAP": "warn"})
    assert severities(run(bk("A", 0), bk("B", 0), config=config), ROOM) == ["warn"]


def test_severity_override_for_one_natural_severity() -> None:
    config = RulesConfig(severity={"R3:warn": "info"})
    cand = bk("A", 0, patient="H|1")
    near = bk("B", 0.6, patient="H|1", rooms=("MR1",))
    same_time = bk("C", 0, patient="H|1", rooms=("MR1",))
    assert severities(run(cand, near, config=config), PAT) == ["info"]
    assert severities(run(cand, same_time, config=config), PAT) == ["block"]


def test_severity_off_drops_the_finding() -> None:
    config = RulesConfig(severity={"PREP-INSTRUCTIONS": "off"})
    assert of(run(bk("A", 0, codes=("76700",)), config=config), "PREP-INSTRUCTIONS") == []


def test_override_cannot_make_a_tentative_booking_block() -> None:
    config = RulesConfig(severity={"R8": "block"})
    first = bk("A", 0, patient="H|1", codes=("74177",), status="waitlist")
    second = bk("B", 48, patient="H|1", codes=("74177",), rooms=("CT2",))
    assert severities(run(second, first, config=config), "DUPLICATE-EXAM") == ["warn"]


def test_window_thresholds_are_configurable() -> None:
    wide = RulesConfig(thresholds=Thresholds(transfer_buffer_minutes=30))
    cand, other = bk("A", 0, patient="H|1"), bk("B", 50 / 60, patient="H|1", rooms=("MR1",))
    assert of(run(cand, other), PAT) == []
    assert severities(run(cand, other, config=wide), PAT) == ["warn"]
    short = RulesConfig(thresholds=Thresholds(barium_before_ct_hours=24))
    ct, barium = bk("CT", 30, patient="H|1", codes=("74177",)), bk("BA", 0, patient="H|1", codes=("74240",),
                                                                 rooms=("RF1",))
    assert severities(run(ct, barium), "SEQ-BARIUM-THEN-CT-ABD") == ["warn"]
    assert of(run(ct, barium, config=short), "SEQ-BARIUM-THEN-CT-ABD") == []


def test_procedure_overrides_reach_the_rules() -> None:
    config = RulesConfig(procedure_overrides={"74177": ProcedureOverride(min_minutes=45)})
    assert severities(run(bk("A", 0, 30, codes=("74177",)), config=config), "DURATION-MISMATCH") == ["warn"]


def test_window_is_the_widest_enabled_sequencing_window() -> None:
    cand = bk("A", 0, 30)
    assert RuleSet().window(cand) == (T0 - timedelta(days=42), cand.end + timedelta(days=42))
    no_thyroid = RuleSet(RulesConfig(disabled=("S3",)))
    assert no_thyroid.horizon == timedelta(days=30)                  # I-131 residual activity
    assert RuleSet(RulesConfig(disabled=("S3", "S4"))).horizon == timedelta(days=14)
    assert RuleSet(RulesConfig(only=("R1", "R2"))).window(cand) == (cand.start, cand.end)


@pytest.mark.parametrize(("config", "message"), [
    (RulesConfig(disabled=("R99",)), "unknown rule"),
    (RulesConfig(severity={"NOPE": "warn"}), "unknown rule or severity"),
    (RulesConfig(severity={"R1:sometimes": "warn"}), "unknown rule or severity"),
    (RulesConfig(capacities={"BAY": 0}), "capacities.BAY"),
])
def test_invalid_configuration_is_refused(config: RulesConfig, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RuleSet(config)


def test_config_from_yaml_with_the_channel_loader() -> None:
    config = parse_options(RulesConfig, """
disabled: [R8]
severity: {"PAT-DOUBLE-BOOK:warn": info}
thresholds: {transfer_buffer_minutes: 20, nm_residual_hours: {Tc-99m: 36}}
capacities: {PET-UPTAKE: 4}
staff: {concurrency: {RADIOLOGIST: 2}}
facility_zone: Europe/Berlin
calendars:
  enabled: true
  modalities:
    CT:
      hours: [{days: [mon, tue, wed, thu, fri], start: "07:00", end: "20:00"}]
      closures: [{start: "2026-12-25", end: "2026-12-26", reason: holiday}]
procedure_overrides:
  "74177": {min_minutes: 40}
  "LOCAL:X9": {same_as: "70553"}
""")
    assert config.thresholds.transfer_buffer_minutes == 20
    assert config.thresholds.nm_residual_hours == {"Tc-99m": 36}
    assert config.calendars.modalities["CT"].closures[0].reason == "holiday"
    rules = RuleSet(config)
    assert rules.catalog.lookup("X9", "", "LOCAL").gbca
    assert rules.catalog.lookup("74177").min_minutes == 40


def test_yaml_mistakes_read_like_compiler_errors() -> None:
    with pytest.raises(ConfigError) as info:
        parse_options(RulesConfig, "thresholds: {transfer_bufer_minutes: 5}\ndisabled: [R42]\n",
                      file="rules.yaml")
    text = str(info.value)
    assert "rules.yaml:1:" in text and "did you mean 'transfer_buffer_minutes'" in text
    assert "rules.yaml:2:" in text and "unknown rule(s): R42" in text


def test_every_option_is_documented_and_defaulted() -> None:
    import dataclasses

    from radsched_engine.rules import config as module
    for cls in (module.RulesConfig, module.Thresholds, module.StaffPolicy, module.CalendarConfig,
                module.ResourceCalendar, module.WeeklyHours, module.Closure, module.ProcedureOverride):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("doc"), f"{cls.__name__}.{f.name} has no doc"
            assert f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


# ---------------------------------------------------------------- model
def test_rule_ids() -> None:
    assert rule_id("r3") == "PAT-DOUBLE-BOOK" and rule_id("S11 PREP-INSTRUCTIONS") == "PREP-INSTRUCTIONS"
    assert rule_id("R3 RES-ROOM-OVERLAP") is None and rule_id("X") is None


@pytest.mark.parametrize(("raw", "status"), [
    ("Booked", "booked"), ("Scheduled", "booked"), ("CANCELLED", "cancelled"), ("Canceled", "cancelled"),
    ("No Show", "noshow"), ("Noshow", "noshow"), ("Waitlist", "waitlist"), ("Pending", "pending"),
    ("Dc", "dc"), ("Deleted", "deleted"), ("Complete", "complete"), ("ARRIVED", "started"),
    ("", "booked"), ("Whatever", "booked"), ("Overbook", "overbook"),
])
def test_normalize_status(raw: str, status: str) -> None:
    assert normalize_status(raw) == status


def test_booking_needs_aware_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Booking("A", "H|1", datetime(2026, 3, 10, 9), datetime(2026, 3, 10, 10, tzinfo=T0.tzinfo))


def test_summary_and_json() -> None:
    findings = run(bk("A", 0, codes=("74177",)), bk("B", 0))
    summary = FindingSummary.of(findings)
    assert summary.highest == "block" and summary.blocked
    assert summary.counts == {"info": 1, "warn": 0, "block": 1} and summary.total == 2
    assert FindingSummary.of([]).highest is None and not FindingSummary.of([]).blocked
    assert findings[0].severity == "block"                      # most severe first
    data = [f.to_json() for f in findings]
    assert json.loads(json.dumps(data)) == data
    detail = Finding("X", "warn", "m", details={"at": T0, "gap": timedelta(minutes=5)}).to_json()
    assert detail["details"] == {"at": T0.isoformat(), "gap": 300.0}


def test_findings_carry_no_patient_identifiers() -> None:
    mrn = "HOSP|MRN-4471-SECRET"
    mine = dict(patient=mrn, sex="F", age=33, facts={
        "egfr": 22, "egfr_date": T0.date(), "metformin": True, "implants": ["pacemaker"],
        "pregnancy_status": "unknown", "ordered_at": T0 - timedelta(days=90)})
    cand = bk("A", 0, 20, codes=("74177", "70553"), staff=(("T1", "TECH"),), **mine)  # type: ignore[arg-type]
    others = [
        bk("B", 0, codes=("74177",), staff=(("T1", "TECH"),)),
        bk("C", -30, codes=("74240",), rooms=("RF1",), **mine),  # type: ignore[arg-type]
        bk("D", 30 * 24, codes=("79005",), rooms=("NM1",), **mine),  # type: ignore[arg-type]
        bk("E", 1, codes=("76700",), rooms=("US1",), **mine),  # type: ignore[arg-type]
    ]
    findings = RuleSet().evaluate(cand, others, NOW)
    assert len({f.rule for f in findings}) >= 10
    text = json.dumps([f.to_json() for f in findings], default=str)
    assert "MRN-4471" not in text and "SECRET" not in text


def test_evaluate_needs_an_aware_clock() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        RuleSet().evaluate(bk("A", 0), [], datetime(2026, 3, 1, 9))


def test_bad_override_names_the_override() -> None:
    with pytest.raises(ValueError, match=r"procedure_overrides\.74177: modality 'QQ'"):
        RuleSet(RulesConfig(procedure_overrides={"74177": ProcedureOverride(modality="QQ")}))


def test_override_with_same_as_replaces_the_entry() -> None:
    rules = RuleSet(RulesConfig(procedure_overrides={"74177": ProcedureOverride(same_as="70551")}))
    exam = rules.catalog.lookup("74177")
    assert exam.modality == "MR" and not exam.iv_iodinated


@pytest.mark.parametrize(("thresholds", "message"), [
    (Thresholds(working_days=("mon", "someday")), "working_days"),
    (Thresholds(urgent_priorities=("X",)), "urgent_priorities"),
    (Thresholds(radiopharmacy_cutoff="2pm"), "radiopharmacy_cutoff"),
])
def test_invalid_thresholds_are_refused(thresholds: Thresholds, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RuleSet(RulesConfig(thresholds=thresholds))
