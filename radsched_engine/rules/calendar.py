"""Resource calendars compiled for R5: weekly opening hours and closures, evaluated in the facility zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .config import CalendarConfig, Closure, ResourceCalendar, WeeklyHours

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin)") from None


def parse_clock(text: str, where: str) -> tuple[time, int]:
    """``HH:MM`` as (time, day offset); ``24:00`` is midnight of the next day."""
    hh, sep, mm = text.strip().partition(":")
    if not (sep and hh.isdigit() and mm.isdigit()) or int(mm) > 59 or int(hh) > 24 or (
            int(hh) == 24 and int(mm) != 0):
        raise ValueError(f"{where}: expected a time HH:MM, got {text!r}")
    return (time(0), 1) if int(hh) == 24 else (time(int(hh), int(mm)), 0)


def _parse_local(text: str, where: str) -> tuple[datetime, bool]:
    """A local date or date-time; the flag says whether it was a bare date."""
    try:
        if len(text.strip()) == 10:
            return datetime.combine(date.fromisoformat(text.strip()), time(0)), True
        return datetime.fromisoformat(text.strip()).replace(tzinfo=None), False
    except ValueError:
        raise ValueError(f"{where}: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM, got {text!r}") from None


@dataclass(frozen=True, slots=True)
class _Weekly:
    weekday: int
    start: time
    end: time
    end_offset: int            # 1 when the block ends on the next day


@dataclass(frozen=True, slots=True)
class CompiledCalendar:
    hours: tuple[_Weekly, ...]          # empty = always open
    blocked: tuple[_Weekly, ...]
    closures: tuple[tuple[datetime, datetime, str], ...]   # aware, half-open


def _weekly(items: list[WeeklyHours], where: str) -> tuple[_Weekly, ...]:
    out = []
    for i, item in enumerate(items):
        label = f"{where}[{i}]"
        start, off0 = parse_clock(item.start, f"{label}.start")
        end, off1 = parse_clock(item.end, f"{label}.end")
        if off0:
            raise ValueError(f"{label}.start: 24:00 is only allowed as an end time")
        if not off1 and end <= start:
            off1 = 1
        for day in item.days:
            key = day.strip().lower()[:3]
            if key not in DAYS:
                raise ValueError(f"{label}.days: unknown day {day!r} (use {' '.join(DAYS)})")
            out.append(_Weekly(DAYS.index(key), start, end, off1))
    return tuple(out)


def _closure(item: Closure, tz: ZoneInfo, where: str) -> tuple[datetime, datetime, str]:
    start, _ = _parse_local(item.start, f"{where}.start")
    end_local, whole_day = _parse_local(item.end or item.start, f"{where}.end")
    if whole_day:
        end_local += timedelta(days=1)
    if end_local <= start:
        raise ValueError(f"{where}: end is not after start")
    return start.replace(tzinfo=tz), end_local.replace(tzinfo=tz), item.reason or "closed"


def compile_calendar(cal: ResourceCalendar, tz: ZoneInfo, where: str) -> CompiledCalendar:
    return CompiledCalendar(
        _weekly(cal.hours, f"{where}.hours"), _weekly(cal.blocked, f"{where}.blocked"),
        tuple(_closure(c, tz, f"{where}.closures[{i}]") for i, c in enumerate(cal.closures)))


def _blocks(weekly: tuple[_Weekly, ...], first: date, last: date, tz: ZoneInfo
            ) -> list[tuple[datetime, datetime]]:
    """Weekly blocks as aware intervals for local dates ``first .. last``."""
    out = []
    day = first
    while day <= last:
        wd = day.weekday()
        for block in weekly:
            if block.weekday == wd:
                start = datetime.combine(day, block.start, tz)
                end = datetime.combine(day + timedelta(days=block.end_offset), block.end, tz)
                out.append((start, end))
        day += timedelta(days=1)
    return out


def _covered(start: datetime, end: datetime, blocks: list[tuple[datetime, datetime]]) -> bool:
    """Is ``[start, end)`` inside the union of ``blocks``?"""
    cursor = start
    for b_start, b_end in sorted(blocks):
        if b_start > cursor:
            break
        if b_end > cursor:
            cursor = b_end
        if cursor >= end:
            return True
    return cursor >= end


@dataclass(frozen=True, slots=True)
class CalendarVerdict:
    closed: str | None = None          # reason when the interval hits a closure or blocked period
    outside_hours: bool = False        # not fully inside standard opening hours


def check(cal: CompiledCalendar, start: datetime, end: datetime, tz: ZoneInfo) -> CalendarVerdict:
    """Where ``[start, end)`` stands against one calendar (instants compared, not wall times)."""
    for c_start, c_end, reason in cal.closures:
        if c_start < end and start < c_end:
            return CalendarVerdict(closed=reason)
    first = start.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date()
    if cal.blocked:
        for b_start, b_end in _blocks(cal.blocked, first, last, tz):
            if b_start < end and start < b_end:
                return CalendarVerdict(closed="blocked")
    if cal.hours and end > start and not _covered(start, end, _blocks(cal.hours, first, last, tz)):
        return CalendarVerdict(outside_hours=True)
    return CalendarVerdict()


class Calendars:
    """All configured calendars, picked by resource id, then modality, then the default."""

    def __init__(self, config: CalendarConfig, tz: ZoneInfo) -> None:
        self.enabled = config.enabled
        self.tz = tz
        self.by_resource = {k: compile_calendar(v, tz, f"calendars.resources.{k}")
                            for k, v in config.resources.items()}
        self.by_modality = {k.upper(): compile_calendar(v, tz, f"calendars.modalities.{k}")
                            for k, v in config.modalities.items()}
        self.default = (compile_calendar(config.default, tz, "calendars.default")
                        if config.default is not None else None)

    def for_resource(self, resource: str, modalities: frozenset[str]) -> CompiledCalendar | None:
        cal = self.by_resource.get(resource)
        if cal is None:
            cal = next((self.by_modality[m] for m in sorted(modalities) if m in self.by_modality), None)
        return cal if cal is not None else self.default
