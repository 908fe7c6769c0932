"""The ``ai_analysis`` outbox handler: Claude reviews a committed booking beside the rules (``source: ai``).

Rows are queued by the conflict_check stage in the message's transaction (payload:
``appointment_key``, ``patient_age``, ``patient_sex``, ``facility_zone``) and delivered after
commit by the outbox worker, so the review never delays an ACK. Per row:

1. load the appointment (now, not as queued) and its neighbours: bookings of the same rooms or
   staff overlapping it, and the patient's bookings within ``window_days``;
2. de-identify (``integrations.deid``: age band and sex, relative times, aliases; the stored
   MRN, name words and phone are scrubbed from every string as well);
3. ``ClaudeAnalyzer.analyze`` (forced tool call, strictly validated, bounded in time);
4. replace the appointment's ``source: ai`` findings, keeping the rule findings — only if the
   appointment has not changed since it was loaded (a newer message queues its own review).

Failures leave the rule findings as they are: timeouts, 429, 5xx and connection errors are
``retry`` (the worker backs off; after ``max_attempts`` the row is dead); answers that are not a
valid tool call, other 4xx and a missing key are ``dead``. Every analysis is counted in
``radsched_ai_analyses{result}``; logs carry the row id and failure kind only.

Re-running an analysis has no outside effect (the last answer replaces the previous AI
findings), so ``reconcile`` lets the worker deliver again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog

from .. import metrics
from ..domain.model import Patient, Phone
from ..integrations.claude import AnalysisFailed, ClaudeAnalyzer, ClaudeSettings
from ..integrations.deid import REDACTED, Deidentified, deidentify
from ..outbox import Delivery, OutboxRow
from ..rules import Finding
from ..rules.model import RULE_IDS
from ..store.conflicts import StoredAppointment, load_context, patient_identifiers, store_ai_findings
from .bookings import booking_from_stored, slot_resources

log = structlog.get_logger("radsched.conflicts")

KIND = "ai_analysis"
_TRANSIENT = frozenset({"timeout", "rate_limited", "server_error", "connection"})
_RETRIED_STATUS = frozenset({408, 409})


class AiReviewHandler:
    """``OutboxHandler`` for ``ai_analysis`` rows; ``store`` is the worker's store."""

    kind = KIND

    def __init__(self, analyzer: ClaudeAnalyzer, store: Any, *, concurrency: int = 2,
                 max_attempts: int = 3, window_days: int = 14, max_neighbours: int = 25) -> None:
        self.analyzer = analyzer
        self.store = store
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.window = timedelta(days=window_days)
        self.max_neighbours = max_neighbours
        # The worker cuts a delivery off at 0.9 x lease: give the analysis all of its own bound.
        self.lease = analyzer.settings.total_seconds / 0.9 + 15.0

    async def deliver(self, row: OutboxRow) -> Delivery:
        key = str(row.payload.get("appointment_key") or "")
        async with self.store.connection() as conn:
            own = (await load_context(conn, keys=[key])).own if key else None
            if own is None or not own.active:
                return Delivery("skipped", {"reason": "gone" if own is None else "inactive"})
            booking = booking_from_stored(own)
            found = await load_context(
                conn, keys=[own.key], resources=slot_resources(booking), start=booking.start,
                end=booking.end, patient_key=booking.patient_key,
                window=(booking.start - self.window, booking.end + self.window))
            identifiers = await patient_identifiers(conn, own.id)
        others = sorted(found.others, key=lambda o: abs(o.start - booking.start))[:self.max_neighbours]
        context = self._context(row, own, list(others), identifiers)
        try:
            results = await self.analyzer.analyze(context)
        except AnalysisFailed as exc:
            return self._failed(row, exc)
        ids = {o.key: o.id for o in others}
        entries = [{**f.to_json(), "other_id": ids.get(f.other) if f.other else None} for f in results]
        async with self.store.connection() as conn:
            stored = await store_ai_findings(conn, own.id, own.last_message_id, entries)
        metrics.AI_ANALYSES.labels("ok").inc()
        if not stored:
            return Delivery("skipped", {"reason": "changed", "findings": len(entries)})
        for f in results:
            metrics.CONFLICTS.labels(f.rule if f.rule in RULE_IDS else "AI", f.severity, "ai").inc()
        log.info("ai_review_stored", row=row.id, findings=len(entries))
        return Delivery("done", {"findings": len(entries),
                                 "severities": sorted({f.severity for f in results})})

    def _context(self, row: OutboxRow, own: StoredAppointment, others: list[StoredAppointment],
                 identifiers: Mapping[str, Any]) -> Deidentified:
        age, sex = row.payload.get("patient_age"), row.payload.get("patient_sex")
        booking = booking_from_stored(own)
        tz = _zone(row.payload.get("facility_zone"))          # weekday and time of day, local
        booking = replace(booking, start=booking.start.astimezone(tz), end=booking.end.astimezone(tz),
                          patient_age=age if isinstance(age, int) else None, patient_sex=str(sex or ""))
        rules = [Finding(str(e.get("rule", "")), str(e.get("severity", "")), str(e.get("message", "")),
                         e.get("other")) for e in own.findings() if e.get("source") != "ai"]
        patient = _patient(identifiers)
        deid = deidentify(booking, [booking_from_stored(o) for o in others], rules,
                          now=datetime.now(UTC), patient=patient)
        words = _name_words(identifiers)
        return Deidentified(_scrub(deid.context, words), deid.aliases) if words else deid

    def _failed(self, row: OutboxRow, exc: AnalysisFailed) -> Delivery:
        metrics.AI_ANALYSES.labels(exc.metric_label).inc()
        transient = exc.kind in _TRANSIENT or (exc.kind == "http_error" and exc.status in _RETRIED_STATUS)
        log.warning("ai_review_failed", row=row.id, kind=exc.kind, status=exc.status,
                    attempt=row.attempts, retry=transient)
        error = f"claude {exc.kind}" + (f" (HTTP {exc.status})" if exc.status else "")
        return Delivery("retry" if transient else "dead", {"failure": exc.kind}, error=error)

    async def reconcile(self, row: OutboxRow) -> Delivery | None:
        return None

    async def close(self) -> None:
        await self.analyzer.close()


def _zone(name: object) -> tzinfo:
    try:
        return ZoneInfo(str(name)) if name else UTC
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _patient(identifiers: Mapping[str, Any]) -> Patient | None:
    """The stored identifiers as a Patient, so the de-identifier scrubs them from free text."""
    mrn = str(identifiers.get("patient_id") or "")
    name = str(identifiers.get("patient_name") or "").split()
    phone = str(identifiers.get("patient_phone") or "")
    if not (mrn or name or phone):
        return None
    return Patient(mrn=mrn, given_name=name[0] if name else "", family_name=name[-1] if name else "",
                   phones=(Phone(phone),) if phone else ())


def _name_words(identifiers: Mapping[str, Any]) -> list[str]:
    words = str(identifiers.get("patient_name") or "").replace(",", " ").split()
    return sorted({w for w in words if len(w) >= 3}, key=len, reverse=True)


def _scrub(value: Any, words: list[str]) -> Any:
    """Every name word of the patient replaced in every string of the context."""
    pattern = re.compile("|".join(rf"(?<!\w){re.escape(w)}(?!\w)" for w in words), re.IGNORECASE)

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            return pattern.sub(REDACTED, v)
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(value)


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    value = float(text)
    if value < 0:
        raise ValueError(f"{name} must not be negative")
    return value


def review_settings(env: Mapping[str, str]) -> tuple[ClaudeSettings, int, int]:
    """(Claude settings, analyses in flight, outbox attempts) from the environment; ValueError
    for a bad number (see ``ai_review``)."""
    overrides: dict[str, Any] = {"model": env.get("RADSCHED_AI_MODEL", "").strip() or None}
    if env.get("RADSCHED_AI_TIMEOUT", "").strip():
        overrides["timeout"] = _number(env, "RADSCHED_AI_TIMEOUT", 20.0)
    if env.get("RADSCHED_AI_MAX_RETRIES", "").strip():
        overrides["max_retries"] = int(_number(env, "RADSCHED_AI_MAX_RETRIES", 2))
    return (ClaudeSettings.from_env(env, **overrides),
            max(1, int(_number(env, "RADSCHED_AI_CONCURRENCY", 2))),
            max(1, int(_number(env, "RADSCHED_AI_MAX_ATTEMPTS", 3))))


def ai_review(env: Mapping[str, str], store: Any) -> tuple[ClaudeAnalyzer | None, AiReviewHandler | None]:
    """The Claude analyzer (the stages' ``services["claude"]``) and its outbox handler, or
    (None, None) without ``ANTHROPIC_API_KEY`` (counted once as ``disabled``; rules only).

    Environment: ``ANTHROPIC_API_KEY``, ``ANTHROPIC_BASE_URL`` (as the SDK reads them),
    ``RADSCHED_AI_MODEL``, ``RADSCHED_AI_TIMEOUT`` (seconds per HTTP attempt, 20),
    ``RADSCHED_AI_MAX_RETRIES`` (SDK retries within one attempt, 2), ``RADSCHED_AI_CONCURRENCY``
    (analyses in flight, 2), ``RADSCHED_AI_MAX_ATTEMPTS`` (outbox attempts before a row is
    dead, 3).
    """
    settings, concurrency, max_attempts = review_settings(env)
    if not settings.enabled:
        metrics.AI_ANALYSES.labels("disabled").inc()
        log.info("ai_review_disabled", reason="no ANTHROPIC_API_KEY; rule findings only")
        return None, None
    analyzer = ClaudeAnalyzer(settings)
    handler = AiReviewHandler(analyzer, store, concurrency=concurrency, max_attempts=max_attempts)
    log.info("ai_review_enabled", model=settings.model, concurrency=handler.concurrency)
    return analyzer, handler
