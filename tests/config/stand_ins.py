"""Stand-in stage specs for config tests: passed explicitly (``stages=``), never registered globally."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from radsched_engine.pipeline import Resources, StageSpec


@dataclass(frozen=True, slots=True)
class ParseOptions:
    strict: bool = field(default=False, metadata={"doc": "Reject messages with unknown segments."})


@dataclass(frozen=True, slots=True)
class ValidateOptions:
    required: tuple[str, ...] = field(default=("PID-3", "SCH-1"),
                                      metadata={"doc": "Fields that must be set."})
    severity: Literal["error", "warning"] = field(default="error", metadata={"doc": "How to report."})


@dataclass(frozen=True, slots=True)
class Rule:
    name: str = field(default="", metadata={"doc": "Rule name."})
    weight: float = field(default=1.0, metadata={"doc": "Rule weight."})


@dataclass(frozen=True, slots=True)
class ConflictOptions:
    window: int = field(default=15, metadata={"doc": "Minutes around an appointment."})
    rules: list[Rule] = field(default_factory=list, metadata={"doc": "Rules to apply."})


@dataclass(frozen=True, slots=True)
class PersistOptions:
    pass


@dataclass(frozen=True, slots=True)
class Sms:
    template: str = field(default="confirmation", metadata={"doc": "Template name."})
    sender: str | None = field(default=None, metadata={"doc": "Sender number."})


@dataclass(frozen=True, slots=True)
class NotifyOptions:
    sms: Sms | None = field(default=None, metadata={"doc": "Send an SMS."})
    delays: dict[str, int] = field(default_factory=dict, metadata={"doc": "Delay per template."})


def _factory(options: Any, resources: Resources) -> Any:
    raise AssertionError("config tests never build stages")


STAGES: dict[str, StageSpec] = {
    spec.name: spec for spec in (
        StageSpec("parse", "Parse the message.", ParseOptions, _factory, "- parse: {strict: true}"),
        StageSpec("validate", "Check required fields.", ValidateOptions, _factory,
                  "- validate: {required: [PID-3]}", after=("parse",)),
        StageSpec("conflict_check", "Look for clashes.", ConflictOptions, _factory,
                  "- conflict_check:\n    window: 30\n    rules: [{name: room, weight: 2}]",
                  after=("validate",)),
        StageSpec("persist", "Store it.", PersistOptions, _factory, "- persist", transactional=True,
                  after=("parse",)),
        StageSpec("notify", "Tell the patient.", NotifyOptions, _factory,
                  "notify: {sms: {template: reminder}}", after=("persist",)),
    )
}
