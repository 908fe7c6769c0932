"""The deterministic conflict rule engine: procedure catalog, rule configuration and the rule set."""

from __future__ import annotations

from .adapt import booking_from_event
from .attributes import ExamAttributes
from .catalog import ProcedureCatalog
from .config import (
    CalendarConfig,
    Closure,
    ProcedureOverride,
    ResourceCalendar,
    RulesConfig,
    StaffPolicy,
    Thresholds,
    WeeklyHours,
    enabled_rules,
)
from .engine import RuleSet
from .model import RULES, Booking, Finding, FindingSummary, normalize_status, rule_id

__all__ = [
    "RULES", "Booking", "CalendarConfig", "Closure", "ExamAttributes", "Finding", "FindingSummary",
    "ProcedureCatalog", "ProcedureOverride", "ResourceCalendar", "RuleSet", "RulesConfig",
    "StaffPolicy", "Thresholds", "WeeklyHours", "booking_from_event", "enabled_rules", "normalize_status",
    "rule_id",
]
