"""``mapping.jsonable``: what the store sends as JSON, whatever the stages put in it."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from radsched_engine.store.mapping import jsonable


class Severity(enum.StrEnum):
    WARN = "warn"


@dataclass
class Finding:
    rule: str
    severity: Severity
    when: datetime
    codes: tuple[str, ...]


def test_plain_json_comes_back_equal_and_everything_else_as_json_types() -> None:
    plain = [{"rule": "R1", "other": None, "n": 3, "x": 1.5, "ok": True, "d": {"a": [1, "b"]}}]
    assert jsonable(plain) == plain
    when = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    value = {1: Finding("R2", Severity.WARN, when, ("a", "b")), "day": date(2026, 3, 10),
             "gap": timedelta(minutes=90), "set": {"z"}, "severity": Severity.WARN}
    assert jsonable(value) == {
        "1": {"rule": "R2", "severity": "warn", "when": "2026-03-10T09:00:00+00:00",
              "codes": ["a", "b"]},
        "day": "2026-03-10", "gap": 5400.0, "set": ["z"], "severity": "warn"}
    assert type(jsonable(Severity.WARN)) is str
