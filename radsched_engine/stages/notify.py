"""The ``notify`` stage: queue the patient's text about a booked, moved or cancelled appointment.

Nothing is sent here. Inside the persist transaction the stage queues one ``sms`` outbox row per
appointment event it is configured for (``outbox.defer``: the unit of work writes it to the
outbox's intake just before the commit); the outbox worker sends it after commit (so a text is
never lost, never holds up the ACK, and a rolled-back message never texts anyone).

Decided at enqueue time, stored in the row's payload: the text's facts (``notify.compose``: the
PID-13 repetitions, PID-14 too when ``use_business_phone``, the ``region``, the event's template,
start, exam, location, preparation, the facility time zone from the channel's ``timezone``), the
quiet-hours window (the row is due when it ends), and ``order_key`` (one per patient: texts to a
patient go out in order). Once the channel has started (``start``), the channel's settings among
those facts (region, templates, clinic, time format, zone, quiet hours) are stored once as a
profile (``notify_profiles``) and each row names it instead of carrying them (the settings
were about half of the bytes the row costs its message's transaction). The outbox worker turns
the facts into the number (mobile ``CP`` repetitions first; E.164 in ``region``; none → the row
is recorded as skipped) and the rendered text at its first claim, and stores both in the row
before it calls Twilio (so a resend after a crash is byte-identical and can be matched at
Twilio); that work stays out of the transaction that holds up the ACK. Dedupe key
``sms:<appointment id>:<trigger>:<journal id>`` (a redelivered message is a duplicate and never
reaches this stage; the key guards against any second enqueue).

Skipped without a row: duplicates and stale updates (``persist_result``), orders, triggers not
in ``events``, booking events (S12/S13/S14) whose appointment is not active, ending events
(S15/S16/S17/S26) whose appointment is still active, and appointments already in the past.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

import structlog

from .. import pipeline
from ..domain.model import AppointmentEvent, Phone
from ..exchange import Exchange
from ..notify.compose import FACTS, PROFILE, own_facts, profile_id, profile_settings, text_facts
from ..notify.quiet import QuietHours, opens_at
from ..notify.templates import (
    BOOKING_EVENTS,
    DEFAULT_TEMPLATES,
    ENDING_EVENTS,
    check_events,
    check_templates,
    prep_from_findings,
)
from ..store.outbox import defer

KIND = "sms"
log = structlog.get_logger("radsched.notify")
_STORE_PROFILE = ("INSERT INTO notify_profiles (id, settings) VALUES ($1, $2::jsonb) "
                  "ON CONFLICT (id) DO NOTHING")
_STORED_PROFILE = "SELECT settings = $2::jsonb FROM notify_profiles WHERE id = $1"


def _region(text: str) -> str | None:
    import phonenumbers

    return None if text.upper() in phonenumbers.SUPPORTED_REGIONS else (
        f"{text!r} is not a region phonenumbers knows (ISO 3166 code such as US, GB, FR)")


@dataclass(frozen=True, slots=True)
class NotifyOptions:
    """Which appointment events text the patient, and how."""

    events: tuple[str, ...] = field(default=("S12", "S13", "S15"), metadata={
        "doc": "SIU triggers that text the patient (S12 booked, S13 moved, S14 changed, S15/S16/S17 "
               "cancelled, S26 no-show).", "check": check_events})
    templates: dict[str, str] = field(default_factory=dict, metadata={
        "doc": "Text per trigger, replacing the built-in one; placeholders {clinic} {exam} "
               "{local_time} {date} {time} {location} {at_location} {prep} {prep_note}.",
        "check": check_templates})
    clinic: str = field(default="RadScheduler", metadata={"doc": "Sender name at the start of texts."})
    time_format: str = field(default="%a %d %b %H:%M", metadata={
        "doc": "strftime format of {local_time} (facility time zone)."})
    region: str = field(default="US", metadata={
        "doc": "Default region for numbers without a country code.", "check": _region})
    use_business_phone: bool = field(default=False, metadata={
        "doc": "Also consider work numbers (PID-14, use code WPN) when no personal one works."})
    quiet_hours: QuietHours | None = field(default=None, metadata={
        "doc": "Hold texts during this local-time window (absent = send at any hour)."})
    skip_past: bool = field(default=True, metadata={
        "doc": "Do not text about appointments whose start has already passed."})


class NotifyStage:
    """Enqueues one ``sms`` outbox row per configured appointment event (see the module doc)."""

    def __init__(self, options: NotifyOptions, resources: pipeline.Resources) -> None:
        self.options = options
        self.channel = resources.channel
        settings = resources.settings
        self.tz: tzinfo = getattr(settings, "tz", None) or UTC
        self.tz_name = getattr(self.tz, "key", None) or getattr(settings, "timezone", "UTC")
        self.events = frozenset(options.events)
        self.templates = {**DEFAULT_TEMPLATES, **options.templates}
        self.quiet = options.quiet_hours.to_json(self.tz_name) if options.quiet_hours else None
        self.store = resources.store
        self.settings = profile_settings(
            region=options.region, templates={t: self.templates[t] for t in sorted(self.events)},
            clinic=options.clinic, time_format=options.time_format, tz=self.tz_name, quiet=self.quiet,
            channel=self.channel)
        self.profile: str | None = None      # the settings' id once stored (``start``)

    async def start(self) -> None:
        """Store the channel's settings as a profile (once; an existing one is reused), so that
        rows name it instead of carrying them. Before this (or without a store) rows carry
        every fact themselves, and so they do when it fails (the database down during a
        reload, the id stored with other settings): the profile only makes rows smaller, and
        must not keep the channel from starting."""
        if self.store is None:
            return
        key = profile_id(self.settings)
        try:
            async with self.store.connection() as conn:
                await conn.execute(_STORE_PROFILE, key, self.settings)
                same = await conn.fetchval(_STORED_PROFILE, key, self.settings)
        except Exception as exc:      # any failure: rows stay self-contained (see above)
            log.warning("notify_profile_not_stored", channel=self.channel, profile=key,
                        error=type(exc).__name__, detail=str(exc)[:200])
            return
        if not same:
            log.error("notify_profile_conflict", channel=self.channel, profile=key,
                      detail="the id is stored with other settings; rows carry every fact")
            return
        self.profile = key

    async def __call__(self, exchange: Exchange) -> None:
        if exchange.data.get("persist_result") != "applied":
            return
        event = exchange.data.get("event")
        appointment = exchange.data.get("appointment")
        if not isinstance(event, AppointmentEvent) or event.trigger not in self.events or not appointment:
            return
        active = appointment.get("status") not in ("CANCELLED", "DELETED", "NO_SHOW", "DISCONTINUED")
        if (event.trigger in BOOKING_EVENTS and not active) or (
                event.trigger in ENDING_EVENTS and active):
            return
        start = appointment.get("datetime") or event.start
        now = datetime.now(UTC)
        if self.options.skip_past and start is not None and start < now:
            return
        payload = self.payload(exchange, event, appointment, start)
        not_before = opens_at(now, self.quiet["start"], self.quiet["end"], self.tz) if self.quiet else None
        key = f"{KIND}:{appointment['id']}:{event.trigger}:{exchange.journal_id or exchange.control_id}"
        defer(exchange, KIND, key, payload, not_before=not_before, appointment_id=appointment["id"])

    def payload(self, exchange: Exchange, event: AppointmentEvent, appointment: dict[str, Any],
                start: datetime | None) -> dict[str, Any]:
        phones = list(event.patient.phones) if event.patient is not None else []
        if not phones and appointment.get("patient_phone"):   # e.g. an S15 without PID-13
            phones = [Phone(appointment["patient_phone"])]
        if not self.options.use_business_phone:
            phones = [p for p in phones if p.use.strip().upper() != "WPN"]
        location = next((r.text or r.code for r in event.locations if (r.text or r.code)), "")
        exam = (appointment.get("study_type") or next((s.text for s in event.services if s.text), "")
                or appointment.get("modality") or "")
        prep = prep_from_findings(exchange.data.get("conflicts"))
        who = appointment.get("patient_key") or f"appointment:{appointment['id']}"
        order_key = "sms:" + hashlib.sha256(f"{self.channel}|{who}".encode()).hexdigest()[:24]
        if self.profile is not None:
            return {FACTS: own_facts(phones, start=start, exam=exam, location=location, prep=prep),
                    "event": event.trigger, PROFILE: self.profile, "order_key": order_key}
        facts = text_facts(phones, region=self.options.region, template=self.templates[event.trigger],
                           clinic=self.options.clinic, time_format=self.options.time_format,
                           tz=self.tz_name, start=start, exam=exam, location=location, prep=prep)
        return {FACTS: facts, "event": event.trigger, "channel": self.channel, "quiet": self.quiet,
                "order_key": order_key}


SPEC = pipeline.register(pipeline.StageSpec(
    name="notify",
    summary="Queue the patient's SMS (booked, moved, cancelled) in the outbox; sent after commit.",
    options=NotifyOptions,
    factory=NotifyStage,
    example=("- notify:\n    events: [S12, S13, S15]\n    region: US\n"
             "    quiet_hours: {start: \"21:00\", end: \"08:00\"}\n"
             "    templates:\n      S12: \"{clinic}: your {exam} is booked for {local_time}"
             "{at_location}.{prep_note} Reply STOP to opt out.\""),
    transactional=True,
    after=("persist",),
))

__all__ = ["KIND", "SPEC", "NotifyOptions", "NotifyStage"]
