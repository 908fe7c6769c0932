"""Patient rules over pairs of one patient's bookings: double booking (R3), duplicates (R8), S1-S10."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING

from . import facts
from .model import Booking
from .profile import Profile

if TYPE_CHECKING:
    from .engine import Context

DOUBLE = "PAT-DOUBLE-BOOK"
DUPLICATE = "DUPLICATE-EXAM"
S1, S2, S3, S4, S5 = ("SEQ-BARIUM-THEN-CT-ABD", "SEQ-GI-FLUORO-ORDER", "SEQ-IODINE-THEN-THYROID-NM",
                      "SEQ-NM-RESIDUAL-ACTIVITY", "SEQ-CONTRAST-BEFORE-DXA")
S6, S7, S8, S9, S10 = ("SEQ-IODINE-IODINE-GAP", "SEQ-GBCA-GBCA-GAP", "SEQ-IODINE-GBCA-SAME-DAY",
                       "SEQ-STRESS-BEFORE-FDG-PET", "PREP-FASTING-COLLISION")
_HOUR = 3600.0


def _hours(delta: timedelta) -> float:
    return round(delta.total_seconds() / _HOUR, 2)


def _orders(cand: Booking, cp: Profile, o: Booking, op: Profile
            ) -> Iterator[tuple[Booking, Profile, Booking, Profile]]:
    """(earlier, later) pairs: one order, or both when the two start together."""
    if cand.start <= o.start:
        yield cand, cp, o, op
    if o.start <= cand.start:
        yield o, op, cand, cp


def check(ctx: Context, same_patient: list[Booking]) -> None:
    cand, prof, rs = ctx.cand, ctx.prof, ctx.rs
    on = rs.enabled
    for o in same_patient:
        if DOUBLE in on:
            _double_book(ctx, o)
        op = rs.profile(o)
        if DUPLICATE in on and prof.codes & op.codes:
            days = rs.thresholds.duplicate_exam_days
            if abs(o.start - cand.start) < timedelta(days=days):
                ctx.add(DUPLICATE, "warn",
                        f"The patient has the same procedure booked twice within {days} days.", o,
                        codes=sorted(prof.codes & op.codes), window_days=days)
        if not (prof.sequenced and op.sequenced):
            continue
        for first, fp, second, sp in _orders(cand, prof, o, op):
            _directional(ctx, o, first, fp, second, sp)
        _contrast_gaps(ctx, o, op)
        if S10 in on:
            _fasting(ctx, o, cand, prof, o, op)
            _fasting(ctx, o, o, op, cand, prof)


def _double_book(ctx: Context, o: Booking) -> None:
    cand = ctx.cand
    if o.start < cand.end and cand.start < o.end:
        ctx.add(DOUBLE, "block", "The patient already has another appointment at an overlapping time.", o)
        return
    buffer = timedelta(minutes=ctx.rs.thresholds.transfer_buffer_minutes)
    gap = o.start - cand.end if o.start >= cand.end else cand.start - o.end
    if gap < buffer and cand.locations and o.locations and not set(cand.locations) & set(o.locations):
        minutes = gap.total_seconds() / 60
        ctx.add(DOUBLE, "warn",
                f"The patient has another appointment in a different location only {minutes:g} min "
                f"apart (transfer buffer {buffer.total_seconds() / 60:g} min).", o,
                gap_minutes=minutes, buffer_minutes=buffer.total_seconds() / 60)


def _directional(ctx: Context, o: Booking, first: Booking, fp: Profile, second: Booking,
                 sp: Profile) -> None:
    """Rules where the order matters: S1, S2, S3, S4, S5, S9."""
    t, on = ctx.rs.thresholds, ctx.rs.enabled
    gap = second.start - first.start
    hours = _hours(gap)       # only used in messages, but cheap next to building a Finding
    if S1 in on and fp.barium and sp.ct_abd_pelvis and gap < timedelta(hours=t.barium_before_ct_hours):
        ctx.add(S1, "warn",
                f"A CT of the abdomen/pelvis is booked {hours:g} h after a barium study; residual "
                f"barium can obscure the CT (allow {t.barium_before_ct_hours} h, or do the CT first).",
                o, gap_hours=hours, window_hours=t.barium_before_ct_hours)
    if S2 in on and fp.gi_ranks and sp.gi_ranks and gap < timedelta(days=t.gi_workup_days):
        first_rank, first_study = fp.gi_ranks[-1]
        second_rank, second_study = sp.gi_ranks[0]
        if first_rank > second_rank:
            ctx.add(S2, "info",
                    f"Contrast studies are out of the preferred order ({first_study} before "
                    f"{second_study}); preferred: plain film, IV urography, barium enema, upper GI.",
                    o, first=first_study, second=second_study)
        elif first_study == "enema" and second_rank == 4 and gap < timedelta(hours=t.enema_before_ugi_hours):
            ctx.add(S2, "info",
                    f"The barium enema is only {hours:g} h before the upper GI study; "
                    f"allow {t.enema_before_ugi_hours} h.", o, gap_hours=hours)
    if S3 in on and fp.iv_iodinated and sp.thyroid_nm and gap < timedelta(days=t.iodine_before_thyroid_days):
        therapy = sp.radioiodine == "therapy"
        ctx.add(S3, "block" if therapy else "warn",
                f"Iodinated contrast is given {gap.days} days before a "
                f"{'radioiodine therapy' if therapy else 'thyroid nuclear medicine study'}; the iodine "
                f"load blocks thyroid uptake for weeks (allow {t.iodine_before_thyroid_days} days).",
                o, gap_days=round(gap.total_seconds() / 86400, 1),
                window_days=t.iodine_before_thyroid_days, therapy=therapy)
    if S4 in on and fp.tracers and sp.tracers:
        later = {iso for iso, _ in sp.tracers}
        for iso, activity in fp.tracers:
            if activity == "low" or iso not in later:
                continue
            window = t.nm_residual_hours.get(iso, t.nm_residual_default_hours)
            if gap < timedelta(hours=window):
                ctx.add(S4, "warn",
                        f"A second {iso} study is booked {hours:g} h after a high-activity {iso} study; "
                        f"residual activity can spoil it (allow {window} h).",
                        o, isotope=iso, gap_hours=hours, window_hours=window)
                break
    if S5 in on and sp.dxa and (fp.barium or fp.oral_contrast or fp.iv_iodinated or fp.tracers) \
            and gap < timedelta(days=t.contrast_before_dxa_days):
        ctx.add(S5, "warn",
                f"A DXA scan is booked {hours:g} h after an exam with contrast or a radiotracer; this "
                f"distorts the bone density (allow {t.contrast_before_dxa_days} days, or do the DXA first).",
                o, gap_hours=hours, window_days=t.contrast_before_dxa_days)
    if S9 in on and fp.exercise_stress and sp.fdg and gap < timedelta(hours=t.stress_before_fdg_hours):
        ctx.add(S9, "warn",
                f"An FDG PET is booked {hours:g} h after an exercise stress test; exertion raises muscle "
                f"uptake (allow {t.stress_before_fdg_hours} h).",
                o, gap_hours=hours, window_hours=t.stress_before_fdg_hours)


def _contrast_gaps(ctx: Context, o: Booking, op: Profile) -> None:
    """Symmetric contrast-dose rules: S6, S7, S8 (gap between starts, either order)."""
    cand, prof, rs = ctx.cand, ctx.prof, ctx.rs
    t, on = rs.thresholds, rs.enabled
    gap = abs(o.start - cand.start)
    hours = _hours(gap)
    urgent = cand.priority in t.urgent_priorities or o.priority in t.urgent_priorities
    if S6 in on and prof.iv_iodinated and op.iv_iodinated:
        severe = facts.severe_renal(cand, o, t.egfr_threshold, dialysis=False)
        if severe and gap < timedelta(hours=t.iodine_gap_severe_hours):
            ctx.add(S6, "warn" if urgent else "block",
                    f"Two iodinated contrast doses {hours:g} h apart with eGFR below "
                    f"{t.egfr_threshold:g}; allow {t.iodine_gap_severe_hours} h.", o,
                    gap_hours=hours, window_hours=t.iodine_gap_severe_hours, urgent=urgent)
        elif gap < timedelta(hours=t.iodine_gap_min_hours):
            ctx.add(S6, "warn", f"Two iodinated contrast doses only {hours:g} h apart (minimum "
                    f"{t.iodine_gap_min_hours} h).", o, gap_hours=hours, window_hours=t.iodine_gap_min_hours)
        elif gap < timedelta(hours=t.iodine_gap_optimal_hours):
            ctx.add(S6, "info", f"Two iodinated contrast doses {hours:g} h apart (optimal "
                    f"{t.iodine_gap_optimal_hours} h).", o, gap_hours=hours,
                    window_hours=t.iodine_gap_optimal_hours)
    if S7 in on and prof.gbca and op.gbca:
        severe = facts.severe_renal(cand, o, t.egfr_threshold, dialysis=True)
        if severe and gap < timedelta(days=t.gbca_gap_severe_days):
            ctx.add(S7, "warn" if urgent else "block",
                    f"Two gadolinium doses {hours:g} h apart with severe renal impairment; allow "
                    f"{t.gbca_gap_severe_days} days.", o, gap_hours=hours,
                    window_days=t.gbca_gap_severe_days, urgent=urgent)
        elif gap < timedelta(hours=t.gbca_gap_hours):
            ctx.add(S7, "warn", f"Two gadolinium doses only {hours:g} h apart (advised "
                    f"{t.gbca_gap_hours} h).", o, gap_hours=hours, window_hours=t.gbca_gap_hours)
    if S8 in on and ((prof.iv_iodinated and op.gbca) or (prof.gbca and op.iv_iodinated)):
        severe = facts.severe_renal(cand, o, t.egfr_threshold, dialysis=True)
        if severe and gap < timedelta(hours=t.iodine_gbca_severe_hours):
            ctx.add(S8, "warn" if urgent else "block",
                    f"Iodinated contrast and gadolinium {hours:g} h apart with severe renal impairment.",
                    o, gap_hours=hours, window_hours=t.iodine_gbca_severe_hours, urgent=urgent)
        elif gap < timedelta(hours=t.iodine_gbca_gap_hours):
            ctx.add(S8, "warn",
                    f"Iodinated contrast and gadolinium only {hours:g} h apart; each can distort the "
                    f"other study (allow {t.iodine_gbca_gap_hours} h).", o,
                    gap_hours=hours, window_hours=t.iodine_gbca_gap_hours)


def _fasting(ctx: Context, o: Booking, a: Booking, ap: Profile, b: Booking, bp: Profile) -> None:
    """S10: exam ``a`` makes the patient eat or drink inside the fasting window of exam ``b``."""
    if not (ap.intake and bp.npo_hours):
        return
    lead = timedelta(minutes=ctx.rs.thresholds.oral_intake_lead_minutes if ap.oral_contrast else 0)
    fast_start = b.start - timedelta(hours=bp.npo_hours)
    if a.start - lead < b.start and fast_start < a.end:
        ctx.add(S10, "block" if bp.needs_sedation else "warn",
                f"An exam that needs the patient to eat or drink falls inside the {bp.npo_hours:g} h "
                f"fasting window of another exam{' under sedation' if bp.needs_sedation else ''}.",
                o, npo_hours=bp.npo_hours, sedation=bp.needs_sedation)
