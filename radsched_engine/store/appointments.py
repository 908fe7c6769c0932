"""Appointment queries: identity keys, advisory locks, overlap search and the one-call upsert."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from ..domain.model import NULL, AppointmentEvent
from .conflicts import ContextRequest, Neighbourhood, neighbourhood
from .journal import lock_key


def appointment_keys(channel: str, event: AppointmentEvent) -> tuple[str, ...]:
    """The keys an event may be stored under, best first: ``<channel>|F:<SCH-2>``, ``<channel>|P:<SCH-1>``.

    Identity is namespaced by channel (one channel = one sending partner). An appointment is
    stored under its first key and remembers the other one (``alt_key``), so later messages
    carrying only the placer or only the filler id still find it.
    """
    keys = []
    if event.filler_id and event.filler_id != NULL:
        keys.append(f"{channel}|F:{event.filler_id}")
    if event.placer_id and event.placer_id != NULL:
        keys.append(f"{channel}|P:{event.placer_id}")
    return tuple(keys)


def slot_lock_names(kind: str, code: str, start: datetime, end: datetime) -> list[str]:
    """Lock names for booking resource ``(kind, code)`` over ``[start, end)``: one per UTC day.

    Two transactions booking the same resource on the same day serialise on these; bookings on
    other days or other resources do not wait for each other.
    """
    day = start.astimezone(UTC).date()
    last = max(end, start).astimezone(UTC).date()
    names = []
    while day <= last:
        names.append(f"res|{kind}|{code}|{day.isoformat()}")
        day += timedelta(days=1)
    return names


def patient_lock_name(patient_key: str) -> str:
    return f"pat|{patient_key}"


async def lock_keys(conn: asyncpg.Connection, keys: Iterable[str]) -> None:
    """Take transaction-scoped advisory locks on ``keys`` (in one global order: no deadlocks).

    Held until the transaction ends. Use names from ``slot_lock_names``, ``patient_lock_name``
    and ``appointment_keys`` so that everyone locks the same things the same way.
    """
    ids = sorted({lock_key(k) for k in keys})
    if ids:
        await conn.execute("SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k", ids)


_OVERLAP = "SELECT * FROM radsched_overlapping($1, $2, $3, $4, $5, $6)"   # migration 0002


async def find_overlapping(
    conn: asyncpg.Connection, *, locations: Iterable[str] = (), personnel: Iterable[str] = (),
    general: Iterable[str] = (), patient_key: str | None = None, start: datetime, end: datetime,
    exclude_key: str | Iterable[str] | None = None,
) -> list[asyncpg.Record]:
    """Active bookings overlapping ``[start, end)`` (half-open: touching is not overlapping).

    One row per overlapping resource booking (``match`` = 'location' / 'personnel' / 'general',
    ``code``, the booking's ``start_at``/``end_at``) and per overlapping appointment of the
    patient (``match`` = 'patient'); each with ``appointment_id``, ``appointment_key``,
    ``status``, ``patient_key``, ``modality``, ``study_type``. Appointments stored under any of
    ``exclude_key`` (e.g. ``appointment_keys(...)`` of the message being checked) are left out.
    Cancelled, deleted, no-show and discontinued appointments never count.
    """
    kinds: list[str] = []
    codes: list[str] = []
    for kind, values in (("location", locations), ("personnel", personnel), ("general", general)):
        for code in values:
            kinds.append(kind)
            codes.append(code)
    excluded = [exclude_key] if isinstance(exclude_key, str) else list(exclude_key or ())
    return await conn.fetch(_OVERLAP, kinds, codes, start, end, patient_key or "", excluded)


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What ``radsched_apply_appointment`` did (see migrations/0002_functions.sql)."""

    result: str                         # applied, duplicate, reused, exists, unknown, stale
    detail: str | None                  # replay ACK code, existing key or stored event time
    journal_id: int | None              # set when applied (the journal row was written with it)
    appointment: dict[str, Any] | None  # the stored row after the change (or as found)


_APPLY = ("SELECT * FROM radsched_apply_appointment("
          "$1::jsonb, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb, $10)")


async def apply_appointment(
    conn: asyncpg.Connection, *, meta: dict[str, Any], raw: bytes, content_hash: bytes,
    message_lock: int, keys: tuple[str, ...], trigger: str, event_time: datetime | None,
    fields: dict[str, Any], resources: list[dict[str, Any]] | None, merge: bool,
) -> ApplyResult:
    """Dedup, lock, upsert and journal one SIU event in a single round trip."""
    row = await conn.fetchrow(_APPLY, meta, raw, content_hash, message_lock, list(keys), trigger,
                              event_time, fields, resources, merge)
    appointment = row["appointment"]
    return ApplyResult(row["result"], row["detail"], row["journal_id"],
                       dict(appointment.items()) if appointment is not None else None)


_BOOK = ("SELECT * FROM radsched_book($1::bigint[], $2::text[], $3::text[], $4, $5, $6, $7, $8, "
         "$9::jsonb, $10, $11, $12, $13, $14, $15, $16::jsonb, $17::jsonb, $18)")   # migration 0310


async def check_and_apply(
    conn: asyncpg.Connection, request: ContextRequest, *, meta: dict[str, Any], raw: bytes,
    content_hash: bytes, message_lock: int, keys: tuple[str, ...], trigger: str,
    event_time: datetime | None, fields: dict[str, Any], resources: list[dict[str, Any]] | None,
    merge: bool,
) -> tuple[Neighbourhood, ApplyResult]:
    """``load_context(request)`` then ``apply_appointment(...)``, in one round trip and one call.

    The request's locks are taken first, then the stored appointment and its neighbours are
    read (none when that appointment is active: the booking is refused), then the change is
    written. The write's own claim answers a redelivery (``request.claim`` is not used).
    """
    locks, _, kinds, codes, start, end, patient, lo, hi = request.args()
    rows = await conn.fetch(_BOOK, locks, kinds, codes, start, end, patient, lo, hi, meta, raw,
                            content_hash, message_lock, list(keys), trigger, event_time, fields,
                            resources, merge)
    last = rows[-1]
    appointment = last["appointment"]
    done = ApplyResult(last["result"], last["detail"], last["journal_id"],
                       dict(appointment.items()) if appointment is not None else None)
    return neighbourhood(rows[:-1]), done
