"""The rule set: one candidate booking checked against the other bookings that can matter, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from . import safety, sequencing, slots
from .calendar import Calendars, parse_clock, zone
from .catalog import ProcedureCatalog
from .config import RulesConfig, enabled_rules, problems
from .model import INACTIVE, RANK, Booking, Finding, rule_id
from .profile import Profile, build_profile

_PROFILE_CACHE_LIMIT = 8192


def _has_patient(patient_key: str) -> bool:
    return bool(patient_key.rpartition("|")[2].strip())


class Context:
    """One evaluation: the candidate, its profile, the clock, and the findings so far."""

    __slots__ = ("cand", "displaced", "findings", "now", "prof", "rs", "stat")

    def __init__(self, rs: RuleSet, cand: Booking, prof: Profile, now: datetime) -> None:
        self.rs = rs
        self.cand = cand
        self.prof = prof
        self.now = now
        self.stat = cand.priority == "S"
        self.findings: list[Finding] = []
        self.displaced: set[str] = set()

    def on(self, rule: str) -> bool:
        return rule in self.rs.enabled

    def add(self, rule: str, severity: str, message: str, other: Booking | None = None,
            **details: object) -> None:
        """Record a finding after severity overrides; tentative bookings never block."""
        sev = self.rs.severity_for(rule, severity)
        if sev is None:
            return
        if sev == "block" and (self.cand.tentative or (other is not None and other.tentative)):
            sev = "warn"
            details["tentative"] = True
        self.findings.append(Finding(rule, sev, message, other.key if other is not None else None,
                                     details=details))


class RuleSet:
    """A configured, reusable rule engine. Build once at start-up; ``evaluate`` per message."""

    def __init__(self, config: RulesConfig | None = None, catalog: ProcedureCatalog | None = None) -> None:
        self.config = config = config if config is not None else RulesConfig()
        wrong = problems(config)
        if wrong:
            raise ValueError("invalid rule configuration: " + "; ".join(wrong))
        self.tz = zone(config.facility_zone)
        self.catalog = catalog if catalog is not None else ProcedureCatalog.load(
            config.procedures, config.procedure_overrides)
        self.enabled = enabled_rules(config)
        self.calendars = Calendars(config.calendars, self.tz)
        self.thresholds = t = config.thresholds
        self.cutoff = parse_clock(t.radiopharmacy_cutoff, "thresholds.radiopharmacy_cutoff")
        self.capacities = dict(config.capacities)
        self.roles = {k.strip().upper(): v for k, v in config.staff.roles.items()}
        self.concurrency = {k.strip().upper(): v for k, v in config.staff.concurrency.items()}
        self.sedation_roles = frozenset(r.strip().upper() for r in config.staff.sedation_roles)
        self.device_roles = frozenset(r.strip().upper() for r in config.staff.device_roles)
        self._severity: dict[tuple[str, str], str] = {}
        for key, value in config.severity.items():
            name, _, natural = key.partition(":")
            rid = rule_id(name)
            if rid is None:
                raise ValueError(f"severity: unknown rule {name!r}")
            self._severity[(rid, natural.strip().lower())] = value
        self._profiles: dict[tuple[tuple[str, str, str], ...], Profile] = {}
        self.horizon = self._horizon()

    def _horizon(self) -> timedelta:
        """How far from a booking another booking can still matter (the widest enabled window)."""
        t = self.thresholds
        hours = {
            "PAT-DOUBLE-BOOK": t.transfer_buffer_minutes / 60,
            "DUPLICATE-EXAM": t.duplicate_exam_days * 24,
            "SEQ-BARIUM-THEN-CT-ABD": t.barium_before_ct_hours,
            "SEQ-GI-FLUORO-ORDER": t.gi_workup_days * 24,
            "SEQ-IODINE-THEN-THYROID-NM": t.iodine_before_thyroid_days * 24,
            "SEQ-NM-RESIDUAL-ACTIVITY": max([t.nm_residual_default_hours, *t.nm_residual_hours.values()]),
            "SEQ-CONTRAST-BEFORE-DXA": t.contrast_before_dxa_days * 24,
            "SEQ-IODINE-IODINE-GAP": max(t.iodine_gap_severe_hours, t.iodine_gap_optimal_hours,
                                         t.iodine_gap_min_hours),
            "SEQ-GBCA-GBCA-GAP": max(t.gbca_gap_severe_days * 24, t.gbca_gap_hours),
            "SEQ-IODINE-GBCA-SAME-DAY": max(t.iodine_gbca_severe_hours, t.iodine_gbca_gap_hours),
            "SEQ-STRESS-BEFORE-FDG-PET": t.stress_before_fdg_hours,
            "PREP-FASTING-COLLISION": 24 + t.oral_intake_lead_minutes / 60,
            "SEDATION-ANESTHESIA-SLOT": t.recovery_buffer_minutes / 60,
        }
        widest = max((h for rule, h in hours.items() if rule in self.enabled), default=0)
        return timedelta(hours=widest)

    def severity_for(self, rule: str, natural: str) -> str | None:
        """The configured severity for a finding the rule would give at ``natural``; None = off."""
        if self._severity:
            sev = self._severity.get((rule, natural)) or self._severity.get((rule, ""))
            if sev is not None:
                return None if sev == "off" else sev
        return natural

    def window(self, booking: Booking) -> tuple[datetime, datetime]:
        """The time range in which other bookings can matter for this one.

        Fetch every active booking whose interval intersects it and that shares the patient or a
        location/personnel resource; resource conflicts only need ``[start, end)`` itself.
        """
        return booking.start - self.horizon, booking.end + self.horizon

    def profile(self, booking: Booking) -> Profile:
        """The folded exam attributes of a booking's procedures (cached by procedure list)."""
        prof = self._profiles.get(booking.procedures)
        if prof is None:
            prof = build_profile(booking.procedures, self.catalog)
            if len(self._profiles) >= _PROFILE_CACHE_LIMIT:
                self._profiles.clear()
            self._profiles[booking.procedures] = prof
        return prof

    def evaluate(self, candidate: Booking, others: Sequence[Booking], now: datetime) -> list[Finding]:
        """Every finding for ``candidate`` against ``others``, most severe first.

        Inactive bookings (cancelled, deleted, no-show, discontinued) never conflict, a booking
        never conflicts with itself (same key) nor with a linked sub-appointment (same group).
        """
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("evaluate(now=...) must be timezone-aware")
        if not candidate.active:
            return []
        ctx = Context(self, candidate, self.profile(candidate), now)
        key, group, c_start, c_end = candidate.key, candidate.group, candidate.start, candidate.end
        patient = candidate.patient_key if _has_patient(candidate.patient_key) else None
        overlapping: list[Booking] = []
        same_patient: list[Booking] = []
        for o in others:
            if o.key == key or o.status in INACTIVE or (group and o.group == group):
                continue
            if o.patient_key == patient:
                same_patient.append(o)
            if o.start < c_end and c_start < o.end:
                overlapping.append(o)
        if overlapping:
            slots.check_overlaps(ctx, overlapping)
        slots.check_own(ctx)
        if same_patient:
            sequencing.check(ctx, same_patient)
        safety.check(ctx, same_patient)
        findings = ctx.findings
        if len(findings) > 1:
            findings.sort(key=lambda f: -RANK.get(f.severity, 0))
        return findings
