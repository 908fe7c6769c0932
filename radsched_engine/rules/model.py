"""The rule engine's values: a booking to check, a finding about it, and the rule/severity vocabulary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

# Severities, lowest first; "off" is only a configuration value (drop the finding).
SEVERITIES = ("info", "warn", "block")
RANK = {"info": 0, "warn": 1, "block": 2}

# Normalized appointment statuses (HL7 table 0278, lower case).
INACTIVE = frozenset({"cancelled", "deleted", "noshow", "dc"})
TENTATIVE = frozenset({"waitlist", "pending"})

# Every rule the engine knows: short id (as in the rules document) -> stable rule id.
RULES: dict[str, str] = {
    "R1": "RES-ROOM-OVERLAP",
    "R2": "RES-STAFF-OVERLAP",
    "R3": "PAT-DOUBLE-BOOK",
    "R4": "DURATION-MISMATCH",
    "R5": "OUTSIDE-CALENDAR",
    "R6": "PRIORITY-TARGET-MISSED",
    "R7": "STAT-DISPLACES-ROUTINE",
    "R8": "DUPLICATE-EXAM",
    "S1": "SEQ-BARIUM-THEN-CT-ABD",
    "S2": "SEQ-GI-FLUORO-ORDER",
    "S3": "SEQ-IODINE-THEN-THYROID-NM",
    "S4": "SEQ-NM-RESIDUAL-ACTIVITY",
    "S5": "SEQ-CONTRAST-BEFORE-DXA",
    "S6": "SEQ-IODINE-IODINE-GAP",
    "S7": "SEQ-GBCA-GBCA-GAP",
    "S8": "SEQ-IODINE-GBCA-SAME-DAY",
    "S9": "SEQ-STRESS-BEFORE-FDG-PET",
    "S10": "PREP-FASTING-COLLISION",
    "S11": "PREP-INSTRUCTIONS",
    "F1": "MRI-IMPLANT-SCREENING",
    "F2": "CONTRAST-RENAL-FUNCTION",
    "F3": "METFORMIN-IODINATED",
    "F4": "PREGNANCY-STATUS",
    "F5": "SEDATION-ANESTHESIA-SLOT",
    "O1": "RADIOPHARMACEUTICAL-LEAD-TIME",
}
RULE_IDS = frozenset(RULES.values())


def rule_id(name: str) -> str | None:
    """The stable rule id for ``R1``, ``RES-ROOM-OVERLAP`` or ``R1 RES-ROOM-OVERLAP``; None if unknown."""
    text = name.strip().upper()
    if text in RULE_IDS:
        return text
    short, _, rest = text.partition(" ")
    if short in RULES and (not rest or rest.strip() == RULES[short]):
        return RULES[short]
    return None


_STATUS_ALIASES = {
    "booked": "booked", "scheduled": "booked", "confirmed": "booked", "sch": "booked",
    "pending": "pending", "waitlist": "waitlist", "waitlisted": "waitlist", "wait list": "waitlist",
    "started": "started", "arrived": "started", "checked in": "started", "in progress": "started",
    "complete": "complete", "completed": "complete", "done": "complete",
    "cancelled": "cancelled", "canceled": "cancelled", "deleted": "deleted",
    "noshow": "noshow", "no show": "noshow", "no-show": "noshow",
    "dc": "dc", "discontinued": "dc", "blocked": "blocked", "overbook": "overbook",
}


def normalize_status(raw: str) -> str:
    """A table 0278 status (or a common variant) as the rules expect it; unknown text counts as booked."""
    return _STATUS_ALIASES.get(" ".join(raw.strip().lower().replace("_", " ").split()), "booked")


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"Booking.{name} must be timezone-aware")


@dataclass(frozen=True, slots=True)
class Booking:
    """One appointment as the rules see it; the half-open interval ``[start, end)``."""

    key: str                          # appointment identity (e.g. "F:12345")
    patient_key: str                  # "authority|mrn"
    start: datetime                   # aware
    end: datetime                     # aware
    status: str = "booked"            # booked, pending, waitlist, started, complete, cancelled, ...
    procedures: tuple[tuple[str, str, str], ...] = ()   # (code, text, coding_system)
    locations: tuple[str, ...] = ()   # AIL-3 resource ids
    personnel: tuple[tuple[str, str], ...] = ()          # (AIP-3 id, AIP-4 role)
    priority: str = "R"               # S, A, R, P, T
    patient_sex: str = ""
    patient_age: int | None = None
    facts: Mapping[str, object] = field(default_factory=dict)
    group: str = ""                   # linked sub-appointments (inject/image) share a non-empty group

    def __post_init__(self) -> None:
        _require_aware("start", self.start)
        _require_aware("end", self.end)

    @property
    def active(self) -> bool:
        return self.status not in INACTIVE

    @property
    def tentative(self) -> bool:
        return self.status in TENTATIVE

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


def _jsonable(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule result: which rule, how serious, a plain message and the other appointment's key.

    The message never carries patient identifiers, names, phones or dates of birth.
    """

    rule: str                 # stable rule id, e.g. "RES-ROOM-OVERLAP"
    severity: str             # "block" | "warn" | "info"
    message: str
    other: str | None = None  # key of the conflicting appointment
    source: str = "rules"
    details: Mapping[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "rule": self.rule, "severity": self.severity, "message": self.message,
            "other": self.other, "source": self.source, "details": _jsonable(self.details),
        }


@dataclass(frozen=True, slots=True)
class FindingSummary:
    """The highest severity among findings and how many there are of each severity."""

    highest: str | None
    counts: Mapping[str, int]

    @classmethod
    def of(cls, findings: Iterable[Finding]) -> FindingSummary:
        counts = Counter(f.severity for f in findings)
        highest = max(counts, key=lambda s: RANK.get(s, -1), default=None)
        return cls(highest, {s: counts.get(s, 0) for s in SEVERITIES})

    @property
    def blocked(self) -> bool:
        return self.highest == "block"

    @property
    def total(self) -> int:
        return sum(self.counts.values())
