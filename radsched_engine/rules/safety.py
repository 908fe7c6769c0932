"""Patient safety gates F1-F5 and the prep instructions (S11), from the candidate's exams and facts."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from . import facts
from .model import Booking

if TYPE_CHECKING:
    from .engine import Context

F1, F2, F3, F4, F5 = ("MRI-IMPLANT-SCREENING", "CONTRAST-RENAL-FUNCTION", "METFORMIN-IODINATED",
                      "PREGNANCY-STATUS", "SEDATION-ANESTHESIA-SLOT")
PREP = "PREP-INSTRUCTIONS"
CARDIAC_DEVICES = ("pacemaker", "icd", "defibrillator", "crt", "loop recorder", "ilr", "cied")
ACTIVE_DEVICES = (*CARDIAC_DEVICES, "stimulator", "cochlear", "pump", "neurostim", "vns", "dbs")
NEGATIVE = frozenset({"negative", "neg", "not pregnant", "not_pregnant", "no", "n"})
PREGNANCY_FACTS = ("pregnancy_status", "pregnancy_test_result", "pregnancy_test_date", "pregnancy_waiver")
POSITIVE = frozenset({"positive", "pos", "pregnant", "yes", "y"})


def check(ctx: Context, same_patient: list[Booking]) -> None:
    on = ctx.rs.enabled
    prof = ctx.prof
    if F1 in on and prof.mr:
        _implants(ctx)
    if (F2 in on or F3 in on) and (prof.iv_iodinated or prof.gbca):
        _renal(ctx)
    if F4 in on:
        _pregnancy(ctx)
    if F5 in on and prof.needs_sedation:
        _sedation(ctx, same_patient)
    if PREP in on:
        for prep in prof.preps:
            ctx.add(PREP, "info", "Patient preparation for this exam.", prep=prep)


def _roles(booking: Booking) -> set[str]:
    return {role.strip().upper() for _, role in booking.personnel if role}


def _implants(ctx: Context) -> None:
    cand = ctx.cand
    items = facts.implants(cand)
    if not items:
        return
    all_cleared = facts.flag(cand, "mr_cleared")
    need_programmer = False
    for item in items:
        kind = str(item.get("type", "")).strip().lower()
        status = str(item.get("mr_status", "unknown")).strip().lower()
        cleared = all_cleared or bool(item.get("cleared"))
        cardiac = any(k in kind for k in CARDIAC_DEVICES)
        active = cardiac or bool(item.get("active")) or any(k in kind for k in ACTIVE_DEVICES)
        label = "cardiac device" if cardiac else ("active implant" if active else "implant")
        if status == "unsafe":
            ctx.add(F1, "block", f"The patient has an {label} recorded as MR-unsafe.", kind=label)
        elif status == "safe":
            continue
        elif not cleared:
            ctx.add(F1, "block" if active else "warn",
                    f"The patient has an {label} with no recorded MR-safety clearance.", kind=label)
        elif cardiac:
            need_programmer = True
    if need_programmer and not _roles(cand) & ctx.rs.device_roles:
        ctx.add(F1, "warn", "MR-conditional cardiac device: no device-programming staff member is booked "
                "for this appointment.", kind="cardiac device")


def _renal(ctx: Context) -> None:
    cand, prof, rs = ctx.cand, ctx.prof, ctx.rs
    t = rs.thresholds
    if not cand.facts or ("egfr" not in cand.facts and "aki" not in cand.facts):
        return                                    # the feed supplies no renal facts: stay quiet
    value = facts.egfr(cand)
    aki = facts.flag(cand, "aki")
    low = value is not None and value < t.egfr_threshold
    if F2 in rs.enabled:
        if low or aki:
            agent = "iodinated contrast" if prof.iv_iodinated else "gadolinium"
            cause = "Acute kidney injury" if aki else f"eGFR below {t.egfr_threshold:g}"
            ctx.add(F2, "warn", f"{cause} before {agent}: a physician should review.", egfr=value, aki=aki)
        elif prof.iv_iodinated and _at_risk(ctx):
            stale = _stale(ctx)
            if stale is not None:
                ctx.add(F2, "warn", f"Patient at risk for contrast kidney injury and the eGFR is {stale}.",
                        egfr=value)
    if F3 in rs.enabled and prof.iv_iodinated and facts.flag(cand, "metformin") and (
            low or aki or prof.intra_arterial):
        ctx.add(F3, "warn", "Hold metformin at the time of the procedure and for 48 h after; restart only "
                "after renal function is rechecked.", egfr=value, aki=aki,
                intra_arterial=prof.intra_arterial)


def _at_risk(ctx: Context) -> bool:
    cand = ctx.cand
    age = cand.patient_age
    return (age is not None and age > ctx.rs.thresholds.renal_risk_age) or any(
        facts.flag(cand, name) for name in facts.RISK_FLAGS)


def _stale(ctx: Context) -> str | None:
    """Why the eGFR is not recent enough for this exam, or None when it is."""
    cand, t = ctx.cand, ctx.rs.thresholds
    if facts.egfr(cand) is None:
        return "missing"
    taken = facts.when(facts.fact(cand, "egfr_date"), ctx.rs.tz)
    if taken is None:
        return "undated"
    klass = str(facts.fact(cand, "patient_class") or "O").strip().upper()[:1]
    limit = {"I": timedelta(days=t.egfr_inpatient_days),
             "E": timedelta(hours=t.egfr_emergency_hours)}.get(klass, timedelta(days=t.egfr_outpatient_days))
    if cand.start - taken > limit:
        return f"older than {limit.days} days" if limit.days else f"older than {limit.seconds // 3600} h"
    return None


def _pregnancy(ctx: Context) -> None:
    cand, prof, t = ctx.cand, ctx.prof, ctx.rs.thresholds
    if cand.patient_sex.strip().upper()[:1] != "F" or cand.patient_age is None:
        return
    if not t.pregnancy_age_min <= cand.patient_age <= t.pregnancy_age_max:
        return
    therapy = prof.radioiodine == "therapy"
    if not (prof.ionizing_abd_pelvis or therapy or (t.pregnancy_gbca and prof.gbca)):
        return
    if t.pregnancy_needs_facts and not (cand.facts and any(k in cand.facts for k in PREGNANCY_FACTS)):
        return                                    # the feed supplies no pregnancy facts: stay quiet
    status = str(facts.fact(cand, "pregnancy_status") or "").strip().lower()
    result = str(facts.fact(cand, "pregnancy_test_result") or "").strip().lower()
    tested = facts.when(facts.fact(cand, "pregnancy_test_date"), ctx.rs.tz)
    waiver = facts.flag(cand, "pregnancy_waiver")
    window = timedelta(hours=t.pregnancy_test_hours)
    test_ok = result in NEGATIVE and tested is not None and timedelta(0) <= cand.start - tested <= window
    if status in POSITIVE or result in POSITIVE:
        ctx.add(F4, "warn" if waiver else "block",
                "The patient is recorded as pregnant; this exam needs a physician's decision.",
                waiver=waiver)
    elif prof.high_dose_pelvic or therapy:
        if test_ok:
            return
        if waiver:
            ctx.add(F4, "warn", "No recent negative pregnancy test; a documented waiver is on file.",
                    waiver=True)
        elif cand.start - ctx.now > window:
            ctx.add(F4, "warn", "This exam needs a negative pregnancy test at most "
                    f"{t.pregnancy_test_hours} h before it.", window_hours=t.pregnancy_test_hours)
        else:
            ctx.add(F4, "block", f"No negative pregnancy test within {t.pregnancy_test_hours} h before this "
                    "high-dose exam.", window_hours=t.pregnancy_test_hours)
    elif status not in NEGATIVE and not test_ok and result not in NEGATIVE:
        ctx.add(F4, "warn", "Pregnancy status is unknown for a patient of child-bearing age.")


def _sedation(ctx: Context, same_patient: list[Booking]) -> None:
    cand, rs = ctx.cand, ctx.rs
    if not _roles(cand) & rs.sedation_roles:
        ctx.add(F5, "block", "This exam needs sedation or anaesthesia but no sedation-capable staff member "
                "is booked.")
    buffer = timedelta(minutes=rs.thresholds.recovery_buffer_minutes)
    for o in same_patient:
        if cand.end <= o.start < cand.end + buffer:
            ctx.add(F5, "warn", f"The next appointment starts less than {buffer.total_seconds() / 60:g} min "
                    "after a sedation case (recovery time).", o,
                    recovery_minutes=buffer.total_seconds() / 60)
