"""Rule engine options: enabled rules, severities, windows, capacities, staff roles and resource calendars."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .model import RULE_IDS, RULES, rule_id

Severity = Literal["block", "warn", "info", "off"]
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_PRIORITIES = ("S", "A", "R", "P", "T")


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


def _check_rule_names(names: tuple[str, ...]) -> str | None:
    bad = [n for n in names if rule_id(n) is None]
    return f"unknown rule(s): {', '.join(bad)} (known: {', '.join(RULES)})" if bad else None


def _check_severity_keys(mapping: dict[str, str]) -> str | None:
    bad = [k for k in mapping if rule_id(k.partition(":")[0]) is None
           or k.partition(":")[2] not in ("", "block", "warn", "info")]
    return (f"unknown rule or severity in key(s): {', '.join(bad)} "
            "(use RULE or RULE:block|warn|info, e.g. PAT-DOUBLE-BOOK:warn)") if bad else None


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Windows and thresholds from the rules document (the defaults are the document's *default* values)."""

    transfer_buffer_minutes: int = field(default=15, metadata=_doc(
        "R3: warn when a patient's next appointment in another location starts within this gap"))
    duration_overrun_factor: float = field(default=2.0, metadata=_doc(
        "R4: info when the booked slot is longer than this many times the typical duration"))
    duplicate_exam_days: int = field(default=7, metadata=_doc(
        "R8: the same procedure code twice for a patient within this many days"))
    priority_target_hours: dict[str, int] = field(default_factory=lambda: {
        "S": 24, "A": 48, "R": 672, "T": 672}, metadata=_doc(
        "R6: longest wait from order (fact 'ordered_at') to start, by priority"))
    barium_before_ct_hours: int = field(default=72, metadata=_doc(
        "S1: a CT abdomen/pelvis less than this long after a barium study"))
    gi_workup_days: int = field(default=14, metadata=_doc(
        "S2: contrast studies within this many days count as one work-up"))
    enema_before_ugi_hours: int = field(default=24, metadata=_doc(
        "S2: the barium enema should come at least this long before the upper GI"))
    iodine_before_thyroid_days: int = field(default=42, metadata=_doc(
        "S3: iodinated contrast within this many days before thyroid NM / radioiodine"))
    nm_residual_hours: dict[str, int] = field(default_factory=lambda: {
        "Tc-99m": 24, "I-123": 48, "Ga-67": 168, "In-111": 168, "Tl-201": 120, "I-131": 720,
        "F-18": 12, "Ga-68": 6}, metadata=_doc(
        "S4: wait after a high-activity study before another study with the same isotope"))
    nm_residual_default_hours: int = field(default=24, metadata=_doc(
        "S4: the wait for an isotope not listed in nm_residual_hours"))
    contrast_before_dxa_days: int = field(default=7, metadata=_doc(
        "S5: barium, oral/IV contrast or tracer within this many days before a DXA"))
    iodine_gap_min_hours: int = field(default=4, metadata=_doc(
        "S6: minimum gap between two iodinated contrast doses (eGFR >= 30)"))
    iodine_gap_optimal_hours: int = field(default=12, metadata=_doc(
        "S6: optimal gap between two iodinated contrast doses (info below it)"))
    iodine_gap_severe_hours: int = field(default=48, metadata=_doc(
        "S6: minimum gap with eGFR < 30 (block unless STAT)"))
    gbca_gap_hours: int = field(default=24, metadata=_doc("S7: advised gap between two GBCA doses"))
    gbca_gap_severe_days: int = field(default=7, metadata=_doc(
        "S7: gap between GBCA doses with eGFR < 30 or dialysis (block unless urgent)"))
    iodine_gbca_gap_hours: int = field(default=4, metadata=_doc(
        "S8: minimum gap between iodinated contrast and GBCA (eGFR >= 30)"))
    iodine_gbca_severe_hours: int = field(default=24, metadata=_doc(
        "S8: iodinated contrast and GBCA closer than this with eGFR < 30 or dialysis: block unless urgent"))
    stress_before_fdg_hours: int = field(default=24, metadata=_doc(
        "S9: an exercise stress test within this many hours before an FDG PET"))
    oral_intake_lead_minutes: int = field(default=120, metadata=_doc(
        "S10: oral contrast is drunk from this long before the exam starts"))
    egfr_threshold: float = field(default=30.0, metadata=_doc("F2/F3/S6-S8: eGFR below this is severe"))
    egfr_outpatient_days: int = field(default=30, metadata=_doc("F2: eGFR recency for outpatients"))
    egfr_inpatient_days: int = field(default=7, metadata=_doc("F2: eGFR recency for inpatients"))
    egfr_emergency_hours: int = field(default=24, metadata=_doc("F2: eGFR recency for emergency patients"))
    renal_risk_age: int = field(default=60, metadata=_doc("F2: patients older than this are at risk"))
    pregnancy_age_min: int = field(default=12, metadata=_doc("F4: youngest age screened for pregnancy"))
    pregnancy_age_max: int = field(default=50, metadata=_doc("F4: oldest age screened for pregnancy"))
    pregnancy_test_hours: int = field(default=72, metadata=_doc(
        "F4: a negative pregnancy test must be at most this old for high-dose exams"))
    pregnancy_needs_facts: bool = field(default=True, metadata=_doc(
        "F4: run only when the feed supplies a pregnancy fact; false = no facts means status unknown"))
    pregnancy_gbca: bool = field(default=True, metadata=_doc(
        "F4: also screen gadolinium MRI (some policies do)"))
    recovery_buffer_minutes: int = field(default=30, metadata=_doc(
        "F5: free time the patient needs after a sedation case before the next appointment"))
    radiopharmacy_cutoff: str = field(default="14:00", metadata=_doc(
        "O1: local time on the previous working day by which NM/PET doses are ordered"))
    working_days: tuple[str, ...] = field(default=("mon", "tue", "wed", "thu", "fri"), metadata=_doc(
        "O1: days the radiopharmacy takes orders"))
    urgent_priorities: tuple[str, ...] = field(default=("S",), metadata=_doc(
        "S6-S8: priorities treated as urgent (a renal-function block becomes a warning)"))


@dataclass(frozen=True, slots=True)
class StaffPolicy:
    """R2/F1/F5: how AIP-4 roles are treated (roles match case-insensitively)."""

    roles: dict[str, Severity] = field(default_factory=lambda: {
        "TECHNOLOGIST": "block", "TECH": "block", "RT": "block", "SONOGRAPHER": "block",
        "ANESTHESIOLOGIST": "block", "ANESTHESIA": "block", "ANES": "block", "CRNA": "block",
        "NURSE": "block", "RN": "block", "SEDATION": "block",
        "RADIOLOGIST": "warn", "RAD": "warn", "SUPERVISING": "warn", "ATTENDING": "warn",
        "PHYSICIAN": "warn", "MD": "warn"}, metadata=_doc("role -> severity of a double booking"))
    default: Literal["block", "warn", "info", "off"] = field(default="warn", metadata=_doc(
        "severity for a role not listed in roles (or no role)"))
    concurrency: dict[str, int] = field(default_factory=lambda: {
        "RADIOLOGIST": 4, "RAD": 4, "SUPERVISING": 4}, metadata=_doc(
        "role -> appointments one person may cover at once before R2 reports it"))
    sedation_roles: tuple[str, ...] = field(default=(
        "ANESTHESIOLOGIST", "ANESTHESIA", "ANES", "CRNA", "SEDATION", "SEDATION NURSE"), metadata=_doc(
        "F5: roles that can give sedation or anaesthesia"))
    device_roles: tuple[str, ...] = field(default=(
        "CARDIOLOGY", "CARDIOLOGIST", "DEVICE", "DEVICE PROGRAMMER", "EP", "ELECTROPHYSIOLOGY"),
        metadata=_doc("F1: roles that can program a cardiac device for MRI"))


@dataclass(frozen=True, slots=True)
class WeeklyHours:
    """One weekly opening block, in the facility's local time."""

    days: tuple[str, ...] = field(default=("mon", "tue", "wed", "thu", "fri"), metadata=_doc(
        "weekdays: mon tue wed thu fri sat sun"))
    start: str = field(default="08:00", metadata=_doc("local opening time HH:MM"))
    end: str = field(default="17:00", metadata=_doc(
        "local closing time HH:MM (24:00 = midnight; earlier than start = the next day)"))


@dataclass(frozen=True, slots=True)
class Closure:
    """A period the resource is unavailable: holiday, maintenance, QA or downtime."""

    start: str = field(default="", metadata=_doc("local date YYYY-MM-DD or date-time YYYY-MM-DDTHH:MM"))
    end: str = field(default="", metadata=_doc(
        "local date (inclusive, whole day) or date-time (exclusive); empty = same as start"))
    reason: str = field(default="closed", metadata=_doc("holiday, maintenance, qa, downtime, ..."))


@dataclass(frozen=True, slots=True)
class ResourceCalendar:
    """A weekly template plus dated closures; no hours listed means open around the clock."""

    hours: list[WeeklyHours] = field(default_factory=list, metadata=_doc(
        "standard opening hours; empty = always open (closures still apply)"))
    blocked: list[WeeklyHours] = field(default_factory=list, metadata=_doc(
        "recurring unavailable blocks (e.g. weekly QA), treated like closures"))
    closures: list[Closure] = field(default_factory=list, metadata=_doc("dated closures and downtime"))


@dataclass(frozen=True, slots=True)
class CalendarConfig:
    """R5 resource calendars, evaluated in the facility zone. Off by default (always open)."""

    enabled: bool = field(default=False, metadata=_doc("check bookings against calendars"))
    resources: dict[str, ResourceCalendar] = field(default_factory=dict, metadata=_doc(
        "calendars by AIL-3 resource id"))
    modalities: dict[str, ResourceCalendar] = field(default_factory=dict, metadata=_doc(
        "calendars by modality (CT, MR, ...) for resources without their own"))
    default: ResourceCalendar | None = field(default=None, metadata=_doc(
        "calendar for everything else; none = always open"))


@dataclass(frozen=True, slots=True)
class ProcedureOverride:
    """Per-code changes to the procedure table (unset fields keep the table's value)."""

    same_as: str | None = field(default=None, metadata=_doc("start from this code's attributes"))
    name: str | None = field(default=None, metadata=_doc("display name"))
    modality: str | None = field(default=None, metadata=_doc("CT MR US XR NM PT MG RF DXA"))
    body_region: str | None = field(default=None, metadata=_doc("body region"))
    iv_iodinated: bool | None = field(default=None, metadata=_doc("IV iodinated contrast"))
    gbca: bool | None = field(default=None, metadata=_doc("gadolinium contrast"))
    oral_barium: bool | None = field(default=None, metadata=_doc("barium by mouth"))
    oral_contrast: bool | None = field(default=None, metadata=_doc("oral contrast drunk beforehand"))
    radiotracer: str | None = field(default=None, metadata=_doc("isotope family, e.g. Tc-99m"))
    tracer_activity: str | None = field(default=None, metadata=_doc("high or low"))
    radioiodine: str | None = field(default=None, metadata=_doc("diagnostic or therapy"))
    thyroid_nm: bool | None = field(default=None, metadata=_doc("thyroid nuclear medicine study"))
    intra_arterial: bool | None = field(default=None, metadata=_doc("intra-arterial contrast study"))
    oral_intake: bool | None = field(default=None, metadata=_doc("the patient eats or drinks for the exam"))
    gi_study: str | None = field(default=None, metadata=_doc("kub, ivu, enema, ugi, swallow or sbft"))
    fdg: bool | None = field(default=None, metadata=_doc("FDG PET"))
    ionizing_abd_pelvis: bool | None = field(default=None, metadata=_doc(
        "ionizing radiation to the abdomen/pelvis (pregnancy screening)"))
    high_dose_pelvic: bool | None = field(default=None, metadata=_doc(
        "needs a negative pregnancy test within the test window"))
    needs_sedation: bool | None = field(default=None, metadata=_doc("sedation or anaesthesia case"))
    npo_hours: float | None = field(default=None, metadata=_doc("fasting hours before the exam"))
    stress_test: str | None = field(default=None, metadata=_doc("exercise or pharmacologic"))
    typical_minutes: int | None = field(default=None, metadata=_doc("typical slot length"))
    min_minutes: int | None = field(default=None, metadata=_doc("shortest acceptable slot"))
    prep: str | None = field(default=None, metadata=_doc("patient prep text"))


@dataclass(frozen=True, slots=True)
class RulesConfig:
    """Options of the conflict rule engine; usable as (part of) a stage's options."""

    disabled: tuple[str, ...] = field(default=(), metadata={
        "doc": "rules to skip, by id (R3) or name (PAT-DOUBLE-BOOK)", "check": _check_rule_names})
    only: tuple[str, ...] = field(default=(), metadata={
        "doc": "if given, run only these rules", "check": _check_rule_names})
    severity: dict[str, Severity] = field(default_factory=dict, metadata={
        "doc": "severity overrides: RULE or RULE:<natural severity> -> block|warn|info|off",
        "check": _check_severity_keys})
    thresholds: Thresholds = field(default_factory=Thresholds, metadata=_doc("windows and thresholds"))
    capacities: dict[str, int] = field(default_factory=dict, metadata=_doc(
        "R1: concurrent bookings a resource takes (e.g. an uptake bay with 4 chairs); default 1"))
    staff: StaffPolicy = field(default_factory=StaffPolicy, metadata=_doc("R2/F1/F5 staff roles"))
    calendars: CalendarConfig = field(default_factory=CalendarConfig, metadata=_doc(
        "R5 resource calendars"))
    facility_zone: str = field(default="UTC", metadata=_doc(
        "IANA zone the calendars, cut-offs and 'same day' are evaluated in"))
    procedures: str | None = field(default=None, metadata=_doc(
        "procedure table file replacing the packaged one"))
    procedure_overrides: dict[str, ProcedureOverride] = field(default_factory=dict, metadata=_doc(
        "per-code changes, keyed by code or SYSTEM:code"))


def problems(config: RulesConfig) -> list[str]:
    """Everything wrong with a configuration that the type walk cannot see (empty = fine)."""
    out = [f"{name}: {msg}" for name, msg in (
        ("disabled", _check_rule_names(config.disabled)), ("only", _check_rule_names(config.only)),
        ("severity", _check_severity_keys(config.severity))) if msg]
    out += [f"severity.{k}: {v!r} is not block, warn, info or off"
            for k, v in config.severity.items() if v not in ("block", "warn", "info", "off")]
    t = config.thresholds
    out += [f"capacities.{k}: must be at least 1, got {v}" for k, v in config.capacities.items() if v < 1]
    out += [f"thresholds.working_days: unknown day {d!r} (use mon tue wed thu fri sat sun)"
            for d in t.working_days if d.strip().lower()[:3] not in _DAYS]
    out += [f"thresholds.{name}: unknown priority {p!r} (use S, A, R, P, T)"
            for name, values in (("urgent_priorities", t.urgent_priorities),
                                 ("priority_target_hours", tuple(t.priority_target_hours)))
            for p in values if p not in _PRIORITIES]
    out += [f"staff.concurrency.{k}: must be at least 1, got {v}"
            for k, v in config.staff.concurrency.items() if v < 1]
    out += [f"staff.roles.{k}: {v!r} is not block, warn, info or off"
            for k, v in config.staff.roles.items() if v not in ("block", "warn", "info", "off")]
    return out


def enabled_rules(config: RulesConfig) -> frozenset[str]:
    """The stable ids of the rules this configuration runs."""
    chosen = {rule_id(n) for n in config.only} if config.only else set(RULE_IDS)
    chosen -= {rule_id(n) for n in config.disabled}
    chosen.discard(None)
    return frozenset(r for r in chosen if r is not None)
