"""The ``persist`` stage: apply an SIU or ORM/OMI event to the database once, in the message's transaction.

Appointments (SIU), keyed per channel by filler id (SCH-2), else placer id (SCH-1):

| Trigger | Effect | Unknown | Existing |
|---|---|---|---|
| S12 book | insert, every column from the message | insert | active: AE 205; inactive: booked again |
| S13 reschedule | update time (and whatever else is sent) | AE 204 | update |
| S14 modify | update fields present (HL7 `""` clears); merge resources | AE 204 | update |
| S15 cancel | status CANCELLED (NO_SHOW when SCH-25 says so); row kept | AE 204 | update |
| S16 discontinue | status DISCONTINUED | AE 204 | update |
| S17 delete | status DELETED (soft delete, as if entered in error) | AE 204 | update |
| S26 no-show | status NO_SHOW | AE 204 | update |

S14 resources are merged by (kind, code): action D removes one, others replace or add; S12 and
S13 replace the resource list when they carry one. Status comes from the trigger; SCH-25 only
refines it (S13/S14 may carry e.g. Complete or Cancelled; S12 Pending/Started/Complete; S15
Noshow). Inactive appointments (cancelled, deleted, no-show, discontinued) no longer count in
conflict checks; their resource rows follow. S14 without SCH-7/TQ1-9 priority keeps urgency.

Orders (ORM^O01, OMI^O23), one per ORC, keyed by placer (ORC-2) or filler (ORC-3) order number
and linked to the appointment whose SCH-26/SCH-27 names them:

| ORC-1 | Effect | Unknown | Existing |
|---|---|---|---|
| NW | create, status NEW (or from ORC-5) | insert | same patient + procedure: update; else AE 205 |
| XO, XX, SC | update the fields present (status from ORC-5 when sent) | AE 204 | update |
| CA, OC, CR | status CANCELLED | AE 204 | update |
| DC, OD | status DISCONTINUED | AE 204 | update |
| HD, OH | status HOLD (previous status remembered) | AE 204 | update |
| RL | release: the status before the hold | AE 204 | update |
| other | AE 103 | | |

Redelivery: a message whose (channel, MSH-3, MSH-4, MSH-10) was already accepted with the same content
(MSH-7 and CR/LF style aside) is a duplicate: nothing is applied and the first ACK code is
repeated (AA). The same MSH-10 with different content is AE 205.

Out of order: an update whose event time (MSH-7; ORC-9 for orders) is older than the stored
state's is *ignored as stale*: nothing is written, the message is journaled as accepted with
a warning (ERR severity W) and answered AA, so the sender's queue moves on and the newer state
stands. Messages without a usable MSH-7 are applied in arrival order.

A lock wait longer than the store's ``lock_timeout`` (another message holds the same
appointment, order or message id), or a deadlock, is AR 206: the sender resends later.

Facts for later stages: ``exchange.data["persist_result"]`` (applied, stale, duplicate),
``["appointment_id"]`` and ``["appointment"]`` (the stored row as a dict), or ``["order_ids"]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import asyncpg

from .. import pipeline
from ..domain.extract import event_for
from ..domain.model import AppointmentEvent, OrderEvent
from ..errors import Drop, Location, Problem, Reject, Retry, Signal
from ..exchange import Exchange, Outcome
from ..store import appointments, journal, mapping, orders
from ..store.conflicts import CHECK_FINISH, CHECK_REQUEST, ContextRequest

# exchange.data: (request, conflicts, warnings so far, call) as ``prepare`` built them
_PREPARED = "persist_call"


@dataclass(frozen=True, slots=True)
class PersistOptions:
    """How scheduling events are stored."""

    default_duration_minutes: int = field(default=30, metadata={
        "doc": "Length of a booked appointment whose message gives no duration (minutes)."})


class PersistStage:
    """Applies the exchange's event with ``exchange.tx`` (the unit of work's transaction)."""

    def __init__(self, options: PersistOptions, resources: pipeline.Resources) -> None:
        self.options = options
        self.channel = resources.channel
        self.tz: tzinfo = getattr(resources.settings, "tz", None) or UTC
        self.default_duration = timedelta(minutes=options.default_duration_minutes)

    async def __call__(self, exchange: Exchange) -> None:
        event = event_for(exchange, self.tz)           # memoised in exchange.data["event"]
        try:
            if isinstance(event, AppointmentEvent):
                await self._appointment(exchange, event)
            elif isinstance(event, OrderEvent):
                await self._orders(exchange, event)
        except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError) as exc:
            raise Retry(206, f"record locked by another message ({type(exc).__name__})",
                        user_text="The record is being changed by another message; resend later.")

    def prepare(self, exchange: Exchange) -> None:
        """Before the transaction: an SIU event's statement (``_call``), from the message and
        what the stages before it prepared; the call builds it again if those changed."""
        try:
            event = event_for(exchange, self.tz)
        except Signal:
            return                         # the call raises it again
        if not isinstance(event, AppointmentEvent) or event.trigger not in mapping.TRIGGER_STATUS:
            return
        keys = appointments.appointment_keys(self.channel, event)
        if not keys or (event.trigger == "S12" and event.start is None):
            return
        request, conflicts = _inputs(exchange, keys, exchange.data.get(CHECK_REQUEST))
        exchange.data[_PREPARED] = (request, conflicts, len(exchange.warnings),
                                    self._call(exchange, event, keys, request, conflicts))

    def _call(self, exchange: Exchange, event: AppointmentEvent, keys: tuple[str, ...],
              request: ContextRequest | None, conflicts: Any) -> appointments.PersistCall:
        """The event's persist statement: with conflict_check's S12 ``request`` its
        neighbourhood is read in the same call; the findings stored with the write are the
        request's (known before the write; more may follow) or ``conflicts``."""
        extra: dict[str, Any] = {}
        if request is not None:
            extra["conflicts"] = request.conflicts or []
        elif conflicts is not None:
            extra["conflicts"] = conflicts
        fields = mapping.appointment_patch(event, default_duration=self.default_duration, **extra)
        resources = mapping.resource_rows(event.resources)
        meta = journal.meta(exchange, Outcome.ACCEPTED)
        return appointments.persist_call(
            request, meta=meta, raw=exchange.raw, content_hash=journal.content_hash(exchange),
            message_lock=journal.message_lock(self.channel, meta["sending_application"],
                                              meta["sending_facility"], meta["control_id"]),
            keys=keys, trigger=event.trigger, event_time=event.event_time, fields=fields,
            resources=resources if resources and event.trigger in ("S12", "S13", "S14") else None,
            merge=event.trigger == "S14")

    async def _appointment(self, exchange: Exchange, event: AppointmentEvent) -> None:
        if event.trigger not in mapping.TRIGGER_STATUS:
            raise Reject(201, f"SIU trigger {event.trigger} is not handled", "MSH-9.2")
        keys = appointments.appointment_keys(self.channel, event)
        if not keys:
            raise Reject(101, "appointment id missing: neither SCH-1 nor SCH-2 is valued", "SCH-1")
        if event.trigger == "S12" and event.start is None:
            raise Reject(101, "appointment start missing (TQ1-7 / SCH-11.4)", "SCH-11")
        request, conflicts = _inputs(exchange, keys, exchange.data.pop(CHECK_REQUEST, None))
        prepared = exchange.data.get(_PREPARED)
        if (prepared is not None and prepared[0] is request and prepared[1] is conflicts
                and prepared[2] == len(exchange.warnings)):
            call = prepared[3]         # built by ``prepare`` from the same inputs
        else:
            call = self._call(exchange, event, keys, request, conflicts)
        try:
            found, done = await appointments.send(exchange.tx, call)
        except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError) as exc:
            if request is None:
                raise
            raise Retry(206, f"booking slot locked by another message ({type(exc).__name__})",
                        user_text="The schedule is being changed by another message; resend later.")
        self._settle(exchange, done.result, done.detail, keys[0])
        exchange.data["appointment_id"] = done.appointment["id"] if done.appointment else None
        exchange.data["appointment"] = done.appointment
        if done.result == "stale":
            exchange.warnings.append(_stale_warning(done.detail))
            return
        exchange.journal_id = done.journal_id
        exchange.data["journaled_warnings"] = len(exchange.warnings)
        finish = exchange.data.pop(CHECK_FINISH, None)
        if found is not None and finish is not None:
            finish(found, done.appointment)          # the rules; may answer AE 205 (block)

    async def _orders(self, exchange: Exchange, event: OrderEvent) -> None:
        msh = journal.header(exchange)
        app, fac, control_id = ((msh.sending_application, msh.sending_facility, msh.control_id)
                                if msh is not None else ("", "", ""))
        conn = exchange.tx
        state, ack = await orders.claim_message(
            conn, journal.message_lock(self.channel, app, fac, control_id), self.channel, app, fac,
            control_id, journal.content_hash(exchange))
        self._settle(exchange, state, ack, "")
        done = await orders.apply_orders(conn, event, channel=self.channel, sending_application=app,
                                         sending_facility=fac)
        exchange.data["order_ids"] = [o.order_id for o in done if o.order_id is not None]
        exchange.data["persist_result"] = "applied"
        for outcome in done:
            if outcome.stale_since is not None:
                exchange.warnings.append(_stale_warning(outcome.stale_since, outcome.location))

    @staticmethod
    def _settle(exchange: Exchange, result: str, detail: str | None, key: str) -> None:
        """Turn a non-applied result into the pipeline signal it means.

        Texts name fields, never identifiers: they reach the channel's log line.
        """
        exchange.data["persist_result"] = result
        if result == "duplicate":
            exchange.replay_ack_code = detail or "AA"
            raise Drop("duplicate")
        if result == "reused":
            raise Reject(205, "MSH-10 was already used for a different message from this sender",
                         "MSH-10", user_text="This message control id was already used for "
                         "another message.")
        if result == "exists":
            raise Reject(205, "an active appointment with this id is already booked",
                         "SCH-2" if key.partition("|")[2].startswith("F:") else "SCH-1",
                         user_text="An appointment with this id is already booked.")
        if result == "unknown":
            by_filler = key.partition("|")[2].startswith("F:")
            raise Reject(204, f"no appointment with this {'filler' if by_filler else 'placer'} "
                         "id to change", "SCH-2" if by_filler else "SCH-1",
                         user_text="The appointment to change was never booked here.")


def _inputs(exchange: Exchange, keys: tuple[str, ...],
            request: ContextRequest | None) -> tuple[ContextRequest | None, Any]:
    """What the statement is built from besides the event: conflict_check's S12 ``request``
    when it is for these keys, else the findings a stage left in ``exchange.data``."""
    if request is not None and request.keys != keys:
        request = None
    return request, (exchange.data.get("conflicts") if request is None else None)


def _stale_warning(stored: str | datetime | None, location: Location | None = None) -> Problem:
    when = stored.isoformat() if isinstance(stored, datetime) else stored
    return Problem(0, f"out-of-order update ignored: the stored state is newer ({when})",
                   location or Location.parse("MSH-7"), "W")


SPEC = pipeline.register(pipeline.StageSpec(
    name="persist",
    summary="Store the appointment or order (idempotent, out-of-order safe) with the journal row.",
    options=PersistOptions,
    factory=PersistStage,
    example="- persist: {default_duration_minutes: 30}",
    transactional=True,
    after=("parse",),
))

__all__ = ["SPEC", "PersistOptions", "PersistStage"]
