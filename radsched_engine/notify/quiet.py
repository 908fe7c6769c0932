"""Quiet hours: a daily local-time window in which patient texts are held until it ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo


def parse_hhmm(text: str) -> time:
    """``"21:00"`` → 21:00; ValueError otherwise."""
    hours, sep, minutes = text.strip().partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2:
        raise ValueError(f"{text!r} is not a time of day like 21:00")
    return time(int(hours), int(minutes))


def check_hhmm(text: str) -> str | None:
    try:
        parse_hhmm(text)
    except ValueError as exc:
        return str(exc)
    return None


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Hold texts from ``start`` to ``end`` (facility local time; may span midnight)."""

    start: str = field(default="21:00", metadata={
        "doc": "Start of the quiet window (HH:MM, facility time).", "check": check_hhmm})
    end: str = field(default="08:00", metadata={
        "doc": "End of the quiet window (HH:MM, facility time); texts held go out then.",
        "check": check_hhmm})

    def __post_init__(self) -> None:
        if parse_hhmm(self.start) == parse_hhmm(self.end):
            raise ValueError("quiet_hours: start and end are equal (an empty or all-day window)")

    def to_json(self, tz_name: str) -> dict[str, str]:
        return {"start": self.start, "end": self.end, "tz": tz_name}


def opens_at(now: datetime, start: str, end: str, tz: tzinfo) -> datetime | None:
    """When the quiet window containing ``now`` ends (aware), or None when ``now`` is not quiet."""
    local = now.astimezone(tz)
    begin, finish = parse_hhmm(start), parse_hhmm(end)
    clock = local.time().replace(tzinfo=None)
    if begin < finish:
        quiet = begin <= clock < finish
        day = local.date()
    else:                                   # spans midnight, e.g. 21:00-08:00
        quiet = clock >= begin or clock < finish
        day = local.date() + timedelta(days=1) if clock >= begin else local.date()
    if not quiet:
        return None
    # Wall-clock end in the zone (a DST gap moves it forward, which is what we want).
    return datetime.combine(day, finish, tzinfo=tz)


def held_until(now: datetime, quiet: Any) -> datetime | None:
    """``opens_at`` for a payload's ``{"start", "end", "tz"}`` (None or malformed → not quiet)."""
    if not isinstance(quiet, dict):
        return None
    try:
        return opens_at(now, quiet["start"], quiet["end"], ZoneInfo(quiet["tz"]))
    except (KeyError, ValueError, TypeError):
        return None
