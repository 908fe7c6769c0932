"""Patient SMS texts: default templates per event, placeholder checks, rendering in the facility zone."""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from ..integrations.sms import MAX_BODY

# SIU triggers a text can be sent for; the first three are the defaults.
EVENTS = ("S12", "S13", "S15", "S14", "S16", "S17", "S26")
# Events about a booking that stands (sent only while the appointment is active) vs. ones that
# end it (sent only when it is no longer active).
BOOKING_EVENTS = frozenset({"S12", "S13", "S14"})
ENDING_EVENTS = frozenset({"S15", "S16", "S17", "S26"})

DEFAULT_TEMPLATES: dict[str, str] = {
    "S12": "{clinic}: your {exam} is booked for {local_time}{at_location}.{prep_note} "
           "Reply STOP to opt out.",
    "S13": "{clinic}: your {exam} has moved to {local_time}{at_location}.{prep_note} "
           "Reply STOP to opt out.",
    "S14": "{clinic}: your {exam} on {local_time}{at_location} has been updated.{prep_note} "
           "Reply STOP to opt out.",
    "S15": "{clinic}: your {exam} on {local_time} is cancelled. Please call us to rebook. "
           "Reply STOP to opt out.",
    "S16": "{clinic}: your {exam} on {local_time} is cancelled. Please call us to rebook. "
           "Reply STOP to opt out.",
    "S17": "{clinic}: your {exam} on {local_time} is cancelled. Please call us to rebook. "
           "Reply STOP to opt out.",
    "S26": "{clinic}: we missed you at your {exam} on {local_time}. Please call us to rebook. "
           "Reply STOP to opt out.",
}

# Placeholder → what it holds. The *_note / at_* forms are empty when there is nothing to say.
PLACEHOLDERS: dict[str, str] = {
    "clinic": "the `clinic` option",
    "exam": "the exam (study type, else the AIS service text, else the modality)",
    "local_time": "start in the facility time zone, per `time_format`",
    "date": "start date, e.g. `Tue 04 Mar`",
    "time": "start time, e.g. `09:00`",
    "location": "the AIL location text (or code), may be empty",
    "at_location": "` at <location>` or nothing",
    "prep": "patient preparation from the conflict rules' info findings, may be empty",
    "prep_note": "` Preparation: <prep>` or nothing",
}


def placeholders_of(template: str) -> list[str]:
    """Names used in ``{...}`` fields; ValueError for a malformed template."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def check_templates(templates: Mapping[str, str]) -> str | None:
    """A config problem with per-event templates (unknown event or placeholder), or None."""
    for event, text in templates.items():
        if event not in EVENTS:
            return f"unknown event {event!r} (allowed: {', '.join(EVENTS)})"
        try:
            names = placeholders_of(text)
        except ValueError as exc:
            return f"template {event}: {exc}"
        for name in names:
            if name not in PLACEHOLDERS:
                return (f"template {event}: unknown placeholder {{{name}}} "
                        f"(allowed: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})")
    return None


def check_events(events: Iterable[str]) -> str | None:
    bad = [e for e in events if e not in EVENTS]
    return f"unknown event(s) {', '.join(bad)} (allowed: {', '.join(EVENTS)})" if bad else None


@dataclass(frozen=True, slots=True)
class TextFacts:
    """What a text may say about an appointment (no patient identifiers)."""

    start: datetime | None
    exam: str = ""
    location: str = ""
    prep: tuple[str, ...] = ()


def render(template: str, facts: TextFacts, *, tz: tzinfo, clinic: str, time_format: str) -> str:
    """The text for ``facts``, the start shown in ``tz``; whitespace tidied, cut to Twilio's limit."""
    local = facts.start.astimezone(tz) if facts.start is not None else None
    prep = " ".join(p.strip().rstrip(".") + "." for p in facts.prep if p.strip())
    values: dict[str, Any] = {
        "clinic": clinic,
        "exam": facts.exam or "appointment",
        "local_time": local.strftime(time_format) if local else "the booked time",
        "date": local.strftime("%a %d %b") if local else "",
        "time": local.strftime("%H:%M") if local else "",
        "location": facts.location,
        "at_location": f" at {facts.location}" if facts.location else "",
        "prep": prep,
        "prep_note": f" Preparation: {prep}" if prep else "",
    }
    text = " ".join(template.format(**values).split())
    return text if len(text) <= MAX_BODY else text[:MAX_BODY - 1] + "…"


def prep_from_findings(findings: Any) -> tuple[str, ...]:
    """Preparation texts of the conflict check's ``info`` findings (dicts or Finding objects)."""
    found: list[str] = []
    for finding in findings or ():
        if type(finding) is dict or isinstance(finding, Mapping):
            severity, details = finding.get("severity"), finding.get("details")
        else:
            severity, details = getattr(finding, "severity", None), getattr(finding, "details", None)
        if severity != "info" or not details:
            continue
        prep = details.get("prep") if type(details) is dict or isinstance(details, Mapping) else None
        if isinstance(prep, str) and prep.strip() and prep.strip() not in found:
            found.append(prep.strip())
    return tuple(found)
