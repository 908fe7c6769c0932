"""Config problems that read like a compiler's (``file:line:col: message``) and the error carrying them."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One finding in a config file; ``line`` and ``column`` are 1-based (0 = the whole file)."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        if self.line <= 0:
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class ConfigError(Exception):
    """Raised by the loaders with every problem found, never just the first."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems: list[ConfigProblem] = list(problems)
        super().__init__(self.render())

    def render(self) -> str:
        """All problems, one per line."""
        return "\n".join(str(p) for p in self.problems)


def did_you_mean(word: str, allowed: Iterable[str], what: str = "option") -> str:
    """``unknown option 'windw' (did you mean 'window'? allowed: window, rules)``."""
    choices = list(allowed)
    return f"unknown {what} {word!r} {allowed_hint(word, choices)}".rstrip()


def allowed_hint(word: str, allowed: Sequence[str]) -> str:
    """``(did you mean 'x'? allowed: a, b)`` — the suggestion only when one is close enough."""
    if not allowed:
        return "(nothing is allowed here)"
    close = difflib.get_close_matches(word, allowed, n=1, cutoff=0.6)
    if not close:
        lowered = {a.lower(): a for a in allowed}
        if word.lower() in lowered:
            close = [lowered[word.lower()]]
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"({hint}allowed: {', '.join(allowed)})"


def sort_problems(problems: Iterable[ConfigProblem]) -> list[ConfigProblem]:
    """Problems ordered by file (first appearance), then line and column; duplicates removed."""
    order: dict[str, int] = {}
    unique: dict[ConfigProblem, None] = {}
    for p in problems:
        order.setdefault(p.file, len(order))
        unique.setdefault(p, None)
    return sorted(unique, key=lambda p: (order[p.file], p.line, p.column))
