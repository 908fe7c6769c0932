"""The ``conflict_check`` stage: the scheduling rules on every booking, inside the persist transaction.

Per SIU message, before ``persist`` and in the same transaction:

1. The candidate booking is built from the message — for S13/S14 merged with the stored
   appointment the way persist will apply it (``conflicts.bookings.candidate``).
2. Transaction-scoped advisory locks are taken, in one sorted order: one per (room or staff
   member, UTC day) the booking touches, before and after the change, plus one per patient.
   Two bookings that overlap on a resource share a UTC day, two bookings of one patient share
   the patient lock; so of two concurrent transactions that could conflict, the second waits
   until the first commits and its next statement sees the first's row (READ COMMITTED takes a
   fresh snapshot per statement). Neither can pass unseen; a lock wait beyond the store's
   ``lock_timeout`` is AR 206.
3. One round trip (``radsched_conflict_context``) takes the locks, stops on a redelivery
   (persist then answers it), and loads the stored appointment and its neighbours: active
   bookings of the same rooms/staff overlapping ``[start, end)`` (btree range probes, indexes
   by booking length: migration 0311) and of the same patient within the rules' widest window
   (patient index).
4. ``RuleSet.evaluate`` (pure); the findings go to ``exchange.data["conflicts"]``, which
   persist stores in ``appointments.conflicts``; each is counted in ``radsched_conflicts``.
5. Symmetry: each finding is mirrored onto the other appointment, and the findings that name
   this appointment on the appointments it conflicted with before are dropped first (one
   statement, only when there is something to change).
6. ``policy: block``: a ``block`` finding answers AE 205 naming the rule and the other
   appointment; nothing is stored. ``policy: flag`` (default) accepts and flags.
7. ``ai_review``: an ``ai_analysis`` outbox row is queued in the same transaction when the
   Claude service exists (the review runs after commit and never delays the ACK).

An S12 (a new booking: nothing stored is needed to build its candidate) takes a shorter road
when ``persist`` follows in the channel: the stage builds its request before the transaction
(``prepare``), leaves it in the exchange, and persist sends it with its write
(``radsched_book``: locks taken and neighbours read first, then the booking written with its
redelivery check, one call); the rules then run on what was read (``_finish``), and the
findings and mirrors are written with the commit (``store.deferred``), or before any later
message of the same group-commit transaction that could read them. Same locks, same snapshot
rules, same answers; a blocking finding under ``policy: block`` rolls the whole message back.

Cancel, discontinue, delete and no-show (and updates whose status ends the appointment) are
not evaluated: the appointment's findings are cleared and removed from its former partners.
Stale updates, updates of unknown appointments and S12 for a booked id are left to persist.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, tzinfo
from typing import Any, Literal

import asyncpg
import structlog

from .. import metrics, pipeline
from ..conflicts import findings as stored
from ..conflicts.bookings import booking_from_stored, candidate, lock_names, slot_resources
from ..domain.model import AppointmentEvent
from ..errors import Retry, Signal
from ..exchange import Exchange
from ..rules import Booking, Finding, FindingSummary, RulesConfig, RuleSet
from ..store import appointments, deferred, journal, mapping, outbox
from ..store.conflicts import (
    CHECK_FINISH,
    CHECK_REQUEST,
    Claim,
    ContextRequest,
    Neighbourhood,
    StoredAppointment,
    link_findings,
    load_appointment,
    load_context,
)

log = structlog.get_logger("radsched.conflicts")

AI_KIND = "ai_analysis"
_EVALUATED = frozenset({"S12", "S13", "S14"})
_ENDING = frozenset({"S15", "S16", "S17", "S26"})


def _zone_check(text: str) -> str | None:
    from ..config.checks import time_zone

    return time_zone(text) if text else None


@dataclass(frozen=True, slots=True)
class ConflictCheckOptions(RulesConfig):
    """The rule engine's options, plus what to do with a blocking conflict and the AI review."""

    facility_zone: str = field(default="", metadata={
        "doc": "IANA zone the calendars, cut-offs and 'same day' are evaluated in (default: the "
               "channel's timezone)", "check": _zone_check})
    policy: Literal["flag", "block"] = field(default="flag", metadata={
        "doc": "flag: accept and store the findings (the RIS is the source of truth); block: answer "
               "AE 205 naming the rule and the other appointment when a finding is 'block'"})
    ai_review: bool = field(default=True, metadata={
        "doc": "queue a Claude review after commit (only when ANTHROPIC_API_KEY is set)"})

    def rules_config(self, zone: str) -> RulesConfig:
        values = {f.name: getattr(self, f.name) for f in fields(RulesConfig)}
        values["facility_zone"] = self.facility_zone or zone
        return RulesConfig(**values)


def _zone_name(tz: tzinfo) -> str:
    return getattr(tz, "key", None) or str(tz)


class ConflictCheckStage:
    """Checks one SIU booking against its neighbours with ``exchange.tx``."""

    def __init__(self, options: ConflictCheckOptions, resources: pipeline.Resources) -> None:
        self.options = options
        self.channel = resources.channel
        self.tz: tzinfo = getattr(resources.settings, "tz", None) or UTC
        self.rules = RuleSet(options.rules_config(_zone_name(self.tz)))
        analyzer = resources.services.get("claude") if resources.services else None
        self.review = bool(options.ai_review and analyzer is not None
                           and getattr(analyzer, "enabled", True))
        self._counters: dict[tuple[str, str], Any] = {}
        self.combined = False              # persist follows: S12 checks ride on its write

    def bind_pipeline(self, names: list[str]) -> None:
        """Told the channel's stage names by the runner: with persist after this stage, an S12's
        neighbourhood is read in the same call that writes it."""
        mine = names.index("conflict_check") if "conflict_check" in names else len(names)
        self.combined = "persist" in names[mine + 1:]

    def prepare(self, exchange: Exchange) -> None:
        """Before the transaction: an S12's request for persist's write (``_request``), which
        needs nothing stored (only with persist after this stage)."""
        if not self.combined:
            return
        from ..domain.extract import event_for

        try:
            event = event_for(exchange, self.tz)
        except Signal:
            return                         # the call raises it again (persist answers it)
        if not isinstance(event, AppointmentEvent) or event.trigger != "S12" or event.start is None:
            return
        keys = appointments.appointment_keys(self.channel, event)
        booking = candidate(event, keys[0], None, self.rules.catalog) if keys else None
        if booking is not None and booking.active:
            self._request(exchange, keys, booking)

    async def __call__(self, exchange: Exchange) -> None:
        if CHECK_REQUEST in exchange.data:
            return                         # prepared (``prepare``): persist sends it
        from ..domain.extract import event_for

        event = exchange.data["event"] if "event" in exchange.data else event_for(exchange, self.tz)
        if not isinstance(event, AppointmentEvent) or event.trigger not in _EVALUATED | _ENDING:
            return
        keys = appointments.appointment_keys(self.channel, event)
        if not keys or (event.trigger == "S12" and event.start is None):
            return                         # persist answers these (AE 101)
        try:
            await self._check(exchange, event, keys)
        except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError) as exc:
            raise Retry(206, f"booking slot locked by another message ({type(exc).__name__})",
                        user_text="The schedule is being changed by another message; resend later.")

    async def _check(self, exchange: Exchange, event: AppointmentEvent, keys: tuple[str, ...]) -> None:
        conn = exchange.tx
        before: StoredAppointment | None = None
        if event.trigger != "S12":
            before = await load_appointment(conn, keys)
            if before is None or _stale(event, before):
                return                     # persist answers AE 204 / ignores the stale update
        booking = candidate(event, before.key if before else keys[0], before, self.rules.catalog)
        if booking is None:
            return
        if not booking.active:
            await self._release(exchange, event, keys, before)
            return
        if event.trigger == "S12" and self.combined:
            self._request(exchange, keys, booking)
            return
        locks = lock_names(booking) + (lock_names(booking_from_stored(before)) if before else [])
        request = ContextRequest(
            keys, tuple(locks), _claim(exchange, self.channel), tuple(slot_resources(booking)),
            booking.start, booking.end, booking.patient_key, self.rules.window(booking))
        found = await load_context(
            conn, keys=keys, locks=locks, claim=request.claim, resources=request.resources,
            start=booking.start, end=booking.end, patient_key=booking.patient_key,
            window=request.window)
        if found.state != "new":
            return                         # a redelivery: persist repeats the first answer
        own = found.own
        if event.trigger == "S12" and own is not None:
            if own.active or _stale(event, own):
                return                     # persist: AE 205 (booked) / stale
            booking = replace(booking, key=own.key)
        results, ids = self._evaluate(exchange, booking, found)
        own_id = own.id if own is not None else None
        await link_findings(conn, booking.key, strip=own.linked_keys() if own else (),
                            add=stored.mirrors(results, booking.key, own_id, ids))
        if self.review:
            self._queue_review(exchange, booking, own_id)

    def _request(self, exchange: Exchange, keys: tuple[str, ...], booking: Booking) -> None:
        """A new booking (S12, persist after this stage): nothing stored is needed to name what
        to look at, so persist sends this request with its write (one round trip) and hands the
        neighbourhood back to ``_finish``. The findings that need no neighbour (preparation
        advice, calendars, ...) are known now and stored with the booking; only neighbours can
        change them later. (No claim: the write's own redelivery check answers a redelivery,
        and the rules then never run.)"""
        alone = self.rules.evaluate(booking, [], exchange.received_at)
        written = [stored.entry(f, {}) for f in alone]
        exchange.data[CHECK_REQUEST] = ContextRequest(
            keys, tuple(lock_names(booking)), None, tuple(slot_resources(booking)), booking.start,
            booking.end, booking.patient_key, self.rules.window(booking), written)
        exchange.data[CHECK_FINISH] = lambda found, row: self._finish(
            exchange, booking, found, row, alone, written)

    def _finish(self, exchange: Exchange, booking: Booking, found: Neighbourhood,
                row: dict[str, Any] | None, alone: list[Finding],
                written: list[dict[str, Any]]) -> None:
        """The S12 check after persist wrote the booking (``row``, with the findings ``written``)
        and ``found`` read just before it: the rules on the neighbours, then any change to the
        findings and their mirrors left for the commit (``store.deferred``)."""
        own = found.own
        if found.state != "new" or row is None:
            return
        if own is None and not found.others:
            # Nothing around it (most bookings): the findings are those stored with the write,
            # nothing to mirror or strip; only the counting, the log line and the policy remain.
            self._evaluate(exchange, booking, found, alone, written)
            if self.review:
                self._queue_review(exchange, booking, None)
            return
        if own is not None:                # an inactive appointment booked again
            booking = replace(booking, key=own.key)
        results, ids = self._evaluate(exchange, booking, found)
        own_id = own.id if own is not None else None
        if exchange.data["conflicts"] != written:
            deferred.add(exchange, deferred.POST, ("conflicts", {
                "id": row["id"], "value": mapping.jsonable(exchange.data["conflicts"])}))
        strip = own.linked_keys() if own else []
        add = {str(i): e for i, e in stored.mirrors(results, booking.key, own_id, ids).items() if e}
        if strip or add:
            deferred.add(exchange, deferred.POST, ("links", {"key": booking.key, "strip": strip,
                                                            "add": add}))
        if self.review:
            self._queue_review(exchange, booking, own_id)

    def _evaluate(self, exchange: Exchange, booking: Booking, found: Neighbourhood,
                  results: list[Finding] | None = None,
                  entries: list[dict[str, Any]] | None = None) -> tuple[list[Finding], dict[str, int]]:
        """Run the rules (unless ``results`` already holds them, and ``entries`` their stored
        JSON); findings to ``exchange.data``, counted and logged; AE 205 when they block."""
        ids = {o.key: o.id for o in found.others}
        if results is None:
            neighbours = [booking_from_stored(o) for o in found.others]
            results = self.rules.evaluate(booking, neighbours, exchange.received_at)
        exchange.data["conflicts"] = (entries if entries is not None
                                      else [stored.entry(f, ids) for f in results])
        exchange.data["conflict_findings"] = results
        self._count(results)
        # Advice alone (info findings: most bookings) is not news: summarised only otherwise.
        if any(f.severity != "info" for f in results):
            summary = FindingSummary.of(results)
            log.info("conflicts_found", channel=self.channel, control_id=exchange.control_id,
                     **{s: n for s, n in summary.counts.items() if n})
        if self.options.policy == "block":
            blocking = stored.blocking(results)
            if blocking:
                raise stored.reject(blocking, ids)
        return results, ids

    async def _release(self, exchange: Exchange, event: AppointmentEvent, keys: tuple[str, ...],
                       before: StoredAppointment | None) -> None:
        """The appointment ends: clear its findings and those that name it elsewhere."""
        exchange.data["conflicts"] = []
        if before is None or not before.findings():
            return
        found = await load_context(exchange.tx, keys=keys, locks=lock_names(booking_from_stored(before)),
                                   claim=_claim(exchange, self.channel))
        own = found.own
        if found.state != "new" or own is None or _stale(event, own):
            return
        await link_findings(exchange.tx, own.key, strip=own.linked_keys(), clear=own.id)

    def _queue_review(self, exchange: Exchange, booking: Booking, own_id: int | None) -> None:
        digest = hashlib.sha256(booking.key.encode()).hexdigest()[:16]
        message = journal.content_hash(exchange).hex()[:24]
        payload = {"appointment_key": booking.key, "patient_age": booking.patient_age,
                   "patient_sex": booking.patient_sex, "facility_zone": self.rules.config.facility_zone}
        outbox.defer(exchange, AI_KIND, f"{AI_KIND}:{digest}:{message}", payload,
                     appointment_id=own_id)

    def _count(self, results: list[Finding]) -> None:
        for f in results:
            child = self._counters.get((f.rule, f.severity))
            if child is None:
                child = self._counters[(f.rule, f.severity)] = metrics.CONFLICTS.labels(
                    f.rule, f.severity, "rules")
            child.inc()


def _stale(event: Any, row: StoredAppointment) -> bool:
    """Persist's staleness rule: an event older than the stored state is not applied."""
    when = getattr(event, "event_time", None)
    return when is not None and row.last_event_time is not None and when < row.last_event_time


def _claim(exchange: Exchange, channel: str) -> Claim | None:
    msh = journal.header(exchange)
    if msh is None or not msh.control_id:
        return None
    app, fac = msh.sending_application, msh.sending_facility
    return Claim(journal.message_lock(channel, app, fac, msh.control_id), channel, app, fac,
                 msh.control_id, journal.content_hash(exchange))


SPEC = pipeline.register(pipeline.StageSpec(
    name="conflict_check",
    summary="Check each booking against the scheduling rules inside the transaction (locked per "
            "resource-day and patient); store the findings, flag or block (AE 205), queue the "
            "Claude review.",
    options=ConflictCheckOptions,
    factory=ConflictCheckStage,
    example="""\
- conflict_check:
    policy: flag                    # or block: AE 205 on a 'block' finding
    disabled: [R4]                  # rules to skip (id or name)
    severity: {PAT-DOUBLE-BOOK: warn}
    capacities: {NM-UPTAKE: 4}      # a room that takes 4 bookings at once
    thresholds: {transfer_buffer_minutes: 20}
""",
    transactional=True,
    after=("parse",),
))

__all__ = ["AI_KIND", "SPEC", "ConflictCheckOptions", "ConflictCheckStage"]
