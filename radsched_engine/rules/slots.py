"""Slot rules: room and staff overlaps (R1, R2, R7), duration (R4), calendars (R5), wait targets (R6, O1)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from . import facts
from .calendar import DAYS, check
from .model import RANK, Booking

if TYPE_CHECKING:
    from .engine import Context

ROOM = "RES-ROOM-OVERLAP"
STAFF = "RES-STAFF-OVERLAP"
STAT_BUMP = "STAT-DISPLACES-ROUTINE"
DURATION = "DURATION-MISMATCH"
CALENDAR = "OUTSIDE-CALENDAR"
TARGET = "PRIORITY-TARGET-MISSED"
LEAD_TIME = "RADIOPHARMACEUTICAL-LEAD-TIME"
NOT_DISPLACEABLE = frozenset({"S", "P", "T"})        # any other (unknown) priority counts as routine


def over_capacity(cand: Booking, clashing: list[Booking], capacity: int) -> list[Booking]:
    """The bookings that overlap the candidate at an instant when more than ``capacity`` run at once."""
    if len(clashing) < capacity:
        return []
    events: list[tuple[datetime, int, int]] = []
    for i, o in enumerate(clashing):
        events.append((max(o.start, cand.start), 1, i))
        events.append((min(o.end, cand.end), 0, i))      # ends sort before starts (half-open)
    events.sort()
    active: set[int] = set()
    over: set[int] = set()
    for _, is_start, i in events:
        if is_start:
            active.add(i)
            if len(active) + 1 > capacity:
                over |= active
        else:
            active.discard(i)
    return [clashing[i] for i in sorted(over)]


def _collision(ctx: Context, rule: str, severity: str, other: Booking, message: str,
               **details: object) -> None:
    """A room/staff collision; a STAT candidate is never blocked by one (R7)."""
    if ctx.stat:
        if other.priority not in NOT_DISPLACEABLE and ctx.on(STAT_BUMP):
            if other.key not in ctx.displaced:
                ctx.displaced.add(other.key)
                ctx.add(STAT_BUMP, "info",
                        "This STAT booking takes the slot of a lower-priority appointment, which must be "
                        "rescheduled and its patient notified.", other,
                        displaced=other.key, displaced_severity="warn", action="reschedule", **details)
            return
        if severity == "block":
            severity = "warn"
            details["stat"] = True
    elif other.status == "overbook" or ctx.cand.status == "overbook":
        severity = "warn" if severity == "block" else severity
        details["overbook"] = True
    ctx.add(rule, severity, message, other, **details)


def check_overlaps(ctx: Context, overlapping: list[Booking]) -> None:
    cand = ctx.cand
    if ctx.on(ROOM) and cand.locations:
        for loc in dict.fromkeys(cand.locations):
            if not loc:
                continue
            clashing = [o for o in overlapping if loc in o.locations]
            if not clashing:
                continue
            capacity = ctx.rs.capacities.get(loc, 1)
            if capacity > 1:
                clashing = over_capacity(cand, clashing, capacity)
            for o in clashing:
                _collision(ctx, ROOM, "block", o,
                           f"Resource {loc} is already booked at an overlapping time"
                           f"{f' beyond its capacity of {capacity}' if capacity > 1 else ''}.",
                           resource=loc, capacity=capacity)
    if ctx.on(STAFF) and cand.personnel:
        rs = ctx.rs
        for person, role in dict.fromkeys(cand.personnel):
            if not person:
                continue
            clashing = [o for o in overlapping if any(p == person for p, _ in o.personnel)]
            if not clashing:
                continue
            role_key = role.strip().upper()
            allowed = rs.concurrency.get(role_key, 1)
            if allowed > 1:
                clashing = over_capacity(cand, clashing, allowed)
            for o in clashing:
                other_role = next((r for p, r in o.personnel if p == person), "")
                severity = max((rs.roles.get(r.strip().upper(), rs.config.staff.default)
                                for r in (role, other_role)), key=lambda s: RANK.get(s, -1))
                if severity == "off":
                    continue
                _collision(ctx, STAFF, severity, o,
                           f"A staff member ({role or 'no role given'}) on this appointment is already "
                           "booked on another appointment at an overlapping time.",
                           person=person, role=role, concurrency=allowed)


def check_own(ctx: Context) -> None:
    """Rules about the candidate alone: R4, R5, R6, O1."""
    if ctx.on(DURATION):
        _duration(ctx)
    if ctx.on(CALENDAR) and ctx.rs.calendars.enabled:
        _calendar(ctx)
    if ctx.on(TARGET):
        _target(ctx)
    if ctx.on(LEAD_TIME) and ctx.prof.modalities & {"NM", "PT"}:
        _lead_time(ctx)


def _duration(ctx: Context) -> None:
    minutes = (ctx.cand.end - ctx.cand.start).total_seconds() / 60
    prof = ctx.prof
    if minutes <= 0:
        ctx.add(DURATION, "warn", "The booking has no duration.", booked_minutes=minutes)
    elif prof.min_minutes and minutes < prof.min_minutes:
        ctx.add(DURATION, "warn",
                f"The slot ({minutes:g} min) is shorter than the minimum for this exam "
                f"({prof.min_minutes} min).", booked_minutes=minutes, min_minutes=prof.min_minutes)
    elif prof.typical_minutes and minutes > ctx.rs.thresholds.duration_overrun_factor * prof.typical_minutes:
        ctx.add(DURATION, "info",
                f"The slot ({minutes:g} min) is much longer than usual for this exam "
                f"({prof.typical_minutes} min).", booked_minutes=minutes,
                typical_minutes=prof.typical_minutes)


def _calendar(ctx: Context) -> None:
    cal_set = ctx.rs.calendars
    cand = ctx.cand
    resources: tuple[str, ...] = tuple(dict.fromkeys(r for r in cand.locations if r)) or ("",)
    for resource in resources:
        cal = cal_set.for_resource(resource, ctx.prof.modalities)
        if cal is None:
            continue
        verdict = check(cal, cand.start, cand.end, cal_set.tz)
        where = f"Resource {resource}" if resource else "The service"
        if verdict.closed is not None:
            ctx.add(CALENDAR, "info" if ctx.stat else "block",
                    f"{where} is unavailable at the booked time ({verdict.closed}).",
                    resource=resource, reason=verdict.closed, stat=ctx.stat)
        elif verdict.outside_hours:
            ctx.add(CALENDAR, "info" if ctx.stat else "warn",
                    f"{where} is booked outside its standard opening hours.",
                    resource=resource, stat=ctx.stat)


def _target(ctx: Context) -> None:
    cand = ctx.cand
    tz = ctx.rs.tz
    ordered = facts.when(facts.fact(cand, "ordered_at"), tz)
    targets = ctx.rs.thresholds.priority_target_hours
    priority = cand.priority if cand.priority in targets else "R"
    if ordered is not None and priority in targets:
        wait = cand.start - ordered
        if wait > timedelta(hours=targets[priority]):
            ctx.add(TARGET, "warn",
                    f"The appointment starts {wait.total_seconds() / 3600:.0f} h after the order, beyond "
                    f"the {targets[priority]} h target for priority {priority}.",
                    priority=priority, wait_hours=round(wait.total_seconds() / 3600, 1),
                    target_hours=targets[priority])
    if cand.priority == "P":
        surgery = facts.when(facts.fact(cand, "surgery_at"), tz)
        if surgery is not None and cand.end > surgery:
            ctx.add(TARGET, "warn", "This pre-operative exam does not finish before the surgery time.",
                    priority="P")


def _lead_time(ctx: Context) -> None:
    """O1: NM/PET booked after the radiopharmacy's order cut-off for the exam day."""
    cand, rs = ctx.cand, ctx.rs
    if ctx.now >= cand.start:
        return
    working = {DAYS.index(d.strip().lower()[:3]) for d in rs.thresholds.working_days
               if d.strip().lower()[:3] in DAYS} or set(range(5))
    day = cand.start.astimezone(rs.tz).date() - timedelta(days=1)
    for _ in range(14):
        if day.weekday() in working:
            break
        day -= timedelta(days=1)
    clock, offset = rs.cutoff
    cutoff = datetime.combine(day + timedelta(days=offset), clock, rs.tz)
    if ctx.now > cutoff:
        ctx.add(LEAD_TIME, "warn",
                "Booked after the radiopharmacy order cut-off for this exam day: the dose may not be "
                "available. A late cancellation wastes the dose.", cutoff=cutoff)
