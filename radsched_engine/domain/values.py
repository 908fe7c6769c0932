"""Reading HL7 values the way the domain wants them: trimmed text, nulls, ids, priorities, warnings."""

from __future__ import annotations

from datetime import datetime

from ..errors import Location, Problem
from .model import NULL


class Notes:
    """Non-fatal findings while extracting (HL7 ERR severity W); their text never holds data values."""

    __slots__ = ("problems", "times")

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.times: dict[str, datetime | None] = {}    # parsed timestamps of this message

    def add(self, code: int, text: str, location: Location | None = None) -> None:
        self.problems.append(Problem(code, text, location, "W"))

    @property
    def texts(self) -> tuple[str, ...]:
        if not self.problems:
            return ()
        return tuple(f"{p.location}: {p.text}" if p.location else p.text for p in self.problems)


def text(value: str) -> str:
    """Trimmed text; an explicit HL7 null ``""`` becomes ``model.NULL``."""
    value = value.strip()
    return NULL if value == '""' else value


def ident(value: str) -> str | None:
    """A trimmed identifier, or None when empty or sent as ``""`` (an id cannot be cleared)."""
    value = value.strip()
    return value if value and value != '""' else None


def nth(comps: list[str], component: int) -> str:
    """Component ``component`` (1-based) of a field's split components; "" when absent."""
    return comps[component - 1] if component <= len(comps) else ""


_PRIORITY = {
    "S": "S", "STAT": "S", "A": "A", "ASAP": "A", "R": "R", "ROUTINE": "R", "P": "P",
    "PREOP": "P", "PRE-OP": "P", "T": "T", "TIMING": "T", "TIMING CRITICAL": "T", "C": "R",
    "CALLBACK": "R",
}


def priority(*values: str) -> str:
    """The first non-empty priority as table 0027 S/A/R/P/T (``TS…``/``TM…`` → T, unknown → R)."""
    for value in values:
        value = value.strip().upper()
        if not value or value == '""':
            continue
        found = _PRIORITY.get(value)
        if found is None:
            found = "T" if value[:2] in ("TS", "TM") else "R"
        return found
    return "R"
