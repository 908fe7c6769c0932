"""Builders for rule-engine tests: bookings at hour offsets from a fixed Tuesday morning (UTC)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from radsched_engine.rules import Booking, Finding, RulesConfig, RuleSet

T0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)          # a Tuesday
NOW = T0 - timedelta(days=10)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def bk(key: str, hours: float = 0, minutes: float = 30, *, patient: str | None = None,
       codes: tuple[str, ...] = ("71250",), text: str = "", rooms: tuple[str, ...] = ("CT1",),
       staff: tuple[tuple[str, str], ...] = (), status: str = "booked", priority: str = "R",
       sex: str = "", age: int | None = None, facts: Mapping[str, object] | None = None,
       group: str = "") -> Booking:
    """A booking ``hours`` after T0 lasting ``minutes``; one procedure per code (``text`` for all).

    Each booking has its own patient unless ``patient`` is given.
    """
    start = at(hours)
    procedures = tuple((c, text, "CPT" if c else "") for c in codes) or (("", text, ""),)
    return Booking(key, patient or f"H|P-{key}", start, start + timedelta(minutes=minutes), status,
                   procedures, rooms, staff, priority, sex, age, dict(facts or {}), group)


_DEFAULT = RuleSet()


def run(cand: Booking, *others: Booking, rules: RuleSet | None = None,
        now: datetime = NOW, config: RulesConfig | None = None) -> list[Finding]:
    ruleset = rules if rules is not None else (RuleSet(config) if config is not None else _DEFAULT)
    return ruleset.evaluate(cand, list(others), now)


def of(findings: list[Finding], rule: str) -> list[Finding]:
    return [f for f in findings if f.rule == rule]


def severities(findings: list[Finding], rule: str) -> list[str]:
    return [f.severity for f in of(findings, rule)]
