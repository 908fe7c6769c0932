"""Appointment queries: identity keys, advisory locks, overlap search and the one-call upsert."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

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


_BOOK = ("SELECT * FROM radsched_book($1::bigint[], $2::text[], $3::text[], $4, $5, $6, $7, $8, "
         "$9::jsonb, $10, $11, $12, $13, $14, $15, $16::jsonb, $17::jsonb, $18)")   # migration 0310


def persist_call(
    request: ContextRequest | None, *, meta: dict[str, Any], raw: bytes, content_hash: bytes,
    message_lock: int, keys: tuple[str, ...], trigger: str, event_time: datetime | None,
    fields: dict[str, Any], resources: list[dict[str, Any]] | None, merge: bool,
) -> PersistCall:
    """The persist statement of one SIU event (no database needed to build it, so a stage can
    build it before its transaction): ``radsched_apply_appointment`` (dedup, lock, upsert and
    journal in one call), or with ``request`` ``radsched_book``: the request's locks taken,
    then the stored appointment and its neighbours read (none when that appointment is active:
    the booking is refused), then the same write; the write's own claim answers a redelivery
    (``request.claim`` is not used)."""
    context = None
    if request is not None:
        locks, _, kinds, codes, start, end, patient, lo, hi = request.args()
        context = (locks, kinds, codes, start, end, patient, lo, hi)
    return PersistCall(context, (meta, raw, content_hash, message_lock, list(keys), trigger,
                                 event_time, fields, resources, merge))


async def send(conn: Any, call: PersistCall) -> tuple[Neighbourhood | None, ApplyResult]:
    """Run ``call`` on ``conn``: (the neighbourhood read first, or None without a context; what
    the write did)."""
    rows = await persist_rows(conn, call)
    return (neighbourhood(rows[:-1]) if call.context is not None else None), _applied(rows[-1])


def _applied(last: Mapping[str, Any]) -> ApplyResult:
    appointment = last["appointment"]
    return ApplyResult(last["result"], last["detail"], last["journal_id"],
                       dict(appointment.items()) if appointment is not None else None)


@dataclass(frozen=True, slots=True)
class PersistCall:
    """The arguments of one persist statement: ``radsched_book`` when ``context`` (its first
    eight: locks, kinds, codes, start, end, patient, from, to) is given, else
    ``radsched_apply_appointment``; ``apply`` = the ten arguments both end with."""

    context: tuple[Any, ...] | None
    apply: tuple[Any, ...]


async def persist_rows(conn: Any, call: PersistCall) -> list[Mapping[str, Any]]:
    """The rows of ``call``'s statement on ``conn``; a group-commit batch's connection
    (``store.group``) has a ``park`` that sends it with the other members' calls."""
    park = getattr(conn, "park", None)
    if park is not None:
        return await park(call)
    if call.context is None:
        return [await conn.fetchrow(_APPLY, *call.apply)]
    return await conn.fetch(_BOOK, *call.context, *call.apply)


_SET = ("SELECT * FROM radsched_book_set($1::boolean[], $2::bigint[], $3::integer[], "
        "$4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[], $8::text[], "
        "$9::timestamptz[], $10::timestamptz[], $11::jsonb[], $12::bytea[], $13::bytea[], "
        "$14::bigint[], $15::text[], $16::text[], $17::text[], $18::timestamptz[], $19::jsonb[], "
        "$20::text[]::jsonb[])")                                                  # migration 0313


def set_wise(calls: Sequence[PersistCall]) -> bool:
    """True when ``calls`` cannot see each other's writes, so ``persist_set`` may write them
    together: all S12 with resources and no order references, no appointment key, message or
    lock name in common (two bookings that could be neighbours share a resource-day or patient
    lock name: ``conflicts.bookings.lock_names``)."""
    keys: set[str] = set()
    messages: set[int] = set()
    locks: set[int] = set()
    for call in calls:
        _, _, _, message, call_keys, trigger, _, fields, resources, _ = call.apply
        if trigger != "S12" or resources is None or fields.get("order_refs"):
            return False
        if call.context is not None:
            call_locks, kinds = call.context[0], call.context[1]
            if kinds is None or locks.intersection(call_locks or ()):
                return False
            locks.update(call_locks or ())
        if message in messages or keys.intersection(call_keys):
            return False
        messages.add(message)
        keys.update(call_keys)
    return True


async def persist_set(conn: asyncpg.Connection,
                      calls: Sequence[PersistCall]) -> list[list[Mapping[str, Any]]] | None:
    """The rows of each of ``calls`` (``set_wise``), written in one statement
    (``radsched_book_set``); None when one needs the per-call path (a redelivery, a stored
    appointment, a neighbour): nothing was written, the locks are held."""
    book: list[bool] = []
    locks: list[int] = []
    res_member: list[int] = []
    kinds: list[str] = []
    codes: list[str] = []
    context: list[list[Any]] = [[] for _ in range(5)]       # start, end, patient, from, to
    apply: list[list[Any]] = [[] for _ in range(10)]
    for member, call in enumerate(calls, start=1):
        book.append(call.context is not None)
        if call.context is None:
            for column in context:
                column.append(None)
        else:
            call_locks, call_kinds, call_codes, *rest = call.context
            locks.extend(call_locks or ())
            kinds.extend(call_kinds)                     # (set_wise: never None)
            codes.extend(call_codes)
            res_member.extend([member] * len(call_kinds))
            for column, value in zip(context, rest, strict=True):
                column.append(value)
        for column, value in zip(apply, call.apply, strict=True):
            column.append(value)
    meta, raw, hashes, message_locks, keys, triggers, event_times, fields, resources, _ = apply
    # (A list of lists would be taken for a two-dimensional array: each as JSON text.)
    resources = [orjson.dumps(r).decode() for r in resources]
    rows = await conn.fetch(_SET, book, locks, res_member, kinds, codes, *context, meta, raw,
                            hashes, message_locks, [k[0] for k in keys],
                            [k[1] if len(k) > 1 else None for k in keys], triggers, event_times,
                            fields, resources)
    if rows and rows[0]["role"] == "fallback":
        return None
    out: list[list[Mapping[str, Any]]] = [[] for _ in calls]
    for row in rows:
        out[row["member"] - 1].append(row)
    return out
