"""Conflict-check queries: lock and load an appointment's neighbourhood, link findings, store AI findings.

The SQL functions live in ``migrations/0101_conflicts.sql``. Appointment rows come back as
``StoredAppointment`` with their resources as ``(kind, code, text, coding_system, role)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from .journal import lock_key

Resource = tuple[str, str, str, str, str]      # kind, code, text, coding_system, role


@dataclass(frozen=True, slots=True)
class StoredAppointment:
    """The columns the conflict rules read from one stored appointment."""

    id: int
    key: str                       # appointments.appointment_key
    status: str                    # SCHEDULED, CANCELLED, ...
    urgency: str                   # stat, asap, routine, preop, timing_critical
    start: datetime
    end: datetime
    patient_key: str
    last_event_time: datetime | None
    last_message_id: int | None
    conflicts: Any                 # the stored findings (a JSON list), or None
    resources: tuple[Resource, ...]

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> StoredAppointment:
        resources = tuple(tuple(str(v or "") for v in item) for item in r["resources"] or ())
        return cls(r["id"], r["appointment_key"], r["status"], r["urgency"], r["start_at"],
                   r["end_at"], r["patient_key"] or "", r["last_event_time"], r["last_message_id"],
                   r["conflicts"], resources)  # type: ignore[arg-type]

    @property
    def active(self) -> bool:
        return self.status not in ("CANCELLED", "DELETED", "NO_SHOW", "DISCONTINUED")

    def findings(self) -> list[dict[str, Any]]:
        """The stored findings (entries that are not JSON objects are left out)."""
        value = self.conflicts
        return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []

    def linked_keys(self) -> list[str]:
        """Keys of the appointments this one's findings name."""
        return sorted({str(e["other"]) for e in self.findings() if e.get("other")})


@dataclass(frozen=True, slots=True)
class Neighbourhood:
    """What ``load_context`` found: a redelivery verdict, or the appointment and its neighbours."""

    state: str                                  # new, duplicate, reused
    own: StoredAppointment | None = None
    others: tuple[StoredAppointment, ...] = ()


@dataclass(frozen=True, slots=True)
class Claim:
    """Identifies the message being checked, so that a redelivery stops before any work."""

    lock: int
    channel: str
    application: str
    facility: str
    control_id: str
    content_hash: bytes

    def json(self) -> dict[str, Any]:
        return {"lock": self.lock, "channel": self.channel, "application": self.application,
                "facility": self.facility, "control_id": self.control_id}


_CONTEXT = ("SELECT * FROM radsched_conflict_context("
            "$1::bigint[], $2::jsonb, $3, $4::text[], $5::text[], $6::text[], $7, $8, $9, $10, $11)")


_LOCK_IDS: dict[str, int] = {}       # lock name -> key: a room's day is locked by many bookings
_LOCK_IDS_LIMIT = 65536


def lock_ids(names: Iterable[str]) -> list[int]:
    """Advisory lock keys for lock names, sorted (every transaction locks in the same order)."""
    ids = set()
    for name in names:
        key = _LOCK_IDS.get(name)
        if key is None:
            if len(_LOCK_IDS) >= _LOCK_IDS_LIMIT:
                _LOCK_IDS.clear()
            key = _LOCK_IDS[name] = lock_key(name)
        ids.add(key)
    return sorted(ids)


# exchange.data keys: a conflict check left for persist to send with its write
# (``appointments.persist_call``), and the callable that finishes it with what came back.
CHECK_REQUEST = "conflict_check_request"
CHECK_FINISH = "conflict_check_finish"


@dataclass(frozen=True, slots=True)
class ContextRequest:
    """What ``load_context`` is asked for, kept for a later call (``appointments.persist_call``)."""

    keys: tuple[str, ...]
    locks: tuple[str, ...] = ()
    claim: Claim | None = None
    resources: tuple[tuple[str, str], ...] | None = None
    start: datetime | None = None
    end: datetime | None = None
    patient_key: str = ""
    window: tuple[datetime, datetime] | None = None
    conflicts: list[dict[str, Any]] | None = None   # findings to store with the write, if any

    def args(self) -> tuple[Any, ...]:
        """``radsched_conflict_context``'s arguments after p_claim, but without p_hash/p_keys:
        (locks, claim, kinds, codes, start, end, patient, from, to)."""
        kinds = codes = None
        if self.resources is not None:
            kinds = [k for k, _ in self.resources]
            codes = [c for _, c in self.resources]
        lo, hi = self.window if self.window is not None else (self.start, self.end)
        return (lock_ids(self.locks) or None, self.claim.json() if self.claim is not None else None,
                kinds, codes, self.start, self.end, self.patient_key or "", lo, hi)


def neighbourhood(records: Iterable[Mapping[str, Any]]) -> Neighbourhood:
    """The context rows of ``radsched_conflict_context`` (other roles ignored) as a Neighbourhood."""
    own: StoredAppointment | None = None
    others: list[StoredAppointment] = []
    for r in records:
        role = r["role"]
        if role in ("duplicate", "reused"):
            return Neighbourhood(role)
        if role == "self":
            own = StoredAppointment.from_record(r)
        elif role == "other":
            others.append(StoredAppointment.from_record(r))
    return Neighbourhood("new", own, tuple(others))


async def load_context(
    conn: asyncpg.Connection, *, keys: Sequence[str], locks: Iterable[str] = (),
    claim: Claim | None = None, resources: Sequence[tuple[str, str]] | None = None,
    start: datetime | None = None, end: datetime | None = None, patient_key: str = "",
    window: tuple[datetime, datetime] | None = None,
) -> Neighbourhood:
    """Lock ``locks``, stop on a redelivery of ``claim``, and load the appointment and its neighbours.

    Neighbours (only when ``resources`` is given, as ``(kind, code)``): active appointments
    holding one of those resources during ``[start, end)``, and the active appointments of
    ``patient_key`` overlapping ``window``; never the appointment stored under ``keys``.
    """
    request = ContextRequest(tuple(keys), tuple(locks), claim,
                             tuple(resources) if resources is not None else None, start, end,
                             patient_key, window)
    locks_, claim_json, kinds, codes, start_, end_, patient, lo, hi = request.args()
    records = await conn.fetch(
        _CONTEXT, locks_, claim_json, claim.content_hash if claim is not None else None,
        list(keys), kinds, codes, start_, end_, patient, lo, hi)
    return neighbourhood(records)


async def load_appointment(conn: asyncpg.Connection, keys: Sequence[str]) -> StoredAppointment | None:
    """The appointment stored under ``keys`` (no locks taken)."""
    return (await load_context(conn, keys=keys)).own


async def link_findings(conn: asyncpg.Connection, key: str, *, strip: Iterable[str] = (),
                        add: Mapping[int, list[dict[str, Any]]] | None = None,
                        clear: int | None = None) -> int:
    """Drop findings naming ``key`` from the appointments keyed ``strip``, append ``add``'s
    findings to the appointments with those ids, and empty the findings of ``clear``."""
    added = {str(i): entries for i, entries in (add or {}).items() if entries}
    strip_keys = sorted(set(strip))
    if not strip_keys and not added and clear is None:
        return 0
    return await conn.fetchval("SELECT radsched_conflict_links($1, $2::text[], $3::jsonb, $4)",
                               key, strip_keys, added, clear)


_STORE_AI = """
UPDATE appointments AS a SET
    conflicts = (SELECT coalesce(jsonb_agg(t.e ORDER BY t.n), '[]'::jsonb)
                   FROM jsonb_array_elements(CASE WHEN jsonb_typeof(a.conflicts) = 'array'
                                                  THEN a.conflicts ELSE '[]'::jsonb END)
                        WITH ORDINALITY AS t(e, n)
                  WHERE coalesce(t.e->>'source', '') <> 'ai') || $3::jsonb,
    updated_at = now()
 WHERE a.id = $1 AND a.active AND a.last_message_id IS NOT DISTINCT FROM $2
RETURNING a.id
"""


async def store_ai_findings(conn: asyncpg.Connection, appointment_id: int, version: int | None,
                            findings: list[dict[str, Any]]) -> bool:
    """Replace the appointment's ``source: ai`` findings, keeping the others.

    Only while the appointment is active and still at ``version`` (its ``last_message_id``):
    False means it changed meanwhile (and nothing was written).
    """
    return await conn.fetchval(_STORE_AI, appointment_id, version, findings) is not None


_FIND = """
SELECT a.id, a.appointment_key, a.alt_key, a.status, a.datetime, a.end_at, a.conflicts
  FROM appointments AS a
 WHERE ($1::integer IS NOT NULL AND a.id = $1)
    OR a.appointment_key = ANY ($2::text[]) OR a.alt_key = ANY ($2::text[])
 ORDER BY a.active DESC, a.id DESC
"""


async def find_appointments(conn: asyncpg.Connection, reference: str,
                            channels: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Appointments matching ``reference``: a numeric id, a stored key (``channel|F:123``), or a
    filler/placer id (``F:123``, ``P:123`` or a bare ``123``) in any of ``channels`` (default:
    every channel that has appointments)."""
    text = reference.strip()
    ident = int(text) if text.isdigit() and len(text) < 10 else None
    keys = [text]
    if "|" not in text:
        bare = text.partition(":")[2] if text[:2] in ("F:", "P:") else text
        prefixes = [text[:2]] if text[:2] in ("F:", "P:") else ["F:", "P:"]
        if not channels:
            channels = [r["channel"] for r in await conn.fetch(
                "SELECT DISTINCT channel FROM appointments")]
        keys = [f"{ch}|{p}{bare}" for ch in channels for p in prefixes]
    return [dict(r.items()) for r in await conn.fetch(_FIND, ident, keys)]


async def keys_to_ids(conn: asyncpg.Connection, keys: Iterable[str]) -> dict[str, int]:
    """The ids of the appointments stored under ``keys``."""
    rows = await conn.fetch("SELECT appointment_key, id FROM appointments WHERE appointment_key = ANY ($1)",
                            sorted(set(keys)))
    return {r["appointment_key"]: r["id"] for r in rows}


async def patient_identifiers(conn: asyncpg.Connection, appointment_id: int) -> dict[str, Any]:
    """The direct identifiers stored with an appointment (MRN, name, phone): what a de-identified
    text must not contain. Never log them."""
    row = await conn.fetchrow("SELECT patient_id, patient_name, patient_phone FROM appointments "
                              "WHERE id = $1", appointment_id)
    return dict(row.items()) if row is not None else {}
