"""Outbox writes: a durable side effect queued in the message's own transaction, at most once.

The ``outbox`` table (migration 0001) is shared by every kind of side effect (``sms``,
``ai_analysis``, ...). Stages queue their rows with ``defer``: the unit of work appends them to
``outbox_intake`` (migration 0402) in the message's transaction, a heap row and one index entry
on the path of the ACK. The worker moves the oldest rows of a kind from the intake into the
outbox when it needs rows to deliver (``take``), in its own transaction; from there a row's
life cycle is:

- ``pending`` (new) / ``retry`` (failed, due again at ``next_attempt_at``);
- a worker claims due rows with ``SELECT ... WHERE status IN ('pending', 'retry', 'sending')
  AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT n FOR UPDATE SKIP LOCKED`` and
  sets ``status = 'sending'``, ``attempts = attempts + 1`` and ``locked_until =
  next_attempt_at = now() + lease``; a worker that dies mid-send leaves a ``sending`` row whose
  lease expires and which is claimed again (index ``outbox_due`` covers all three states);
- it ends as ``sent`` (``result``), ``skipped`` (``result`` says why), ``dead`` (gave up;
  ``last_error``) or ``cancelled``.

``dedupe_key`` is unique in the outbox: the same effect queued twice (a redelivered message, a
retried transaction) keeps the first row; a second one in the intake is dropped when it is moved.
``enqueue`` writes straight into the outbox (tools and tests that need the row at once).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from . import deferred

_ENQUEUE = ("INSERT INTO outbox (kind, dedupe_key, payload, next_attempt_at, appointment_id) "
            "VALUES ($1, $2, $3::jsonb, coalesce($4, now()), $5) ON CONFLICT (dedupe_key) DO NOTHING")
# Added to an autocommit statement: its transaction commits without waiting for its WAL to reach
# the disk (set_config(..., true) lasts until that commit).
ASYNC_COMMIT = "FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit"
# Migration 0402: the oldest rows of a kind from the intake into the outbox, in order; the async
# form, lost in a crash, is undone, the rows still in the intake.
_TAKE = "SELECT radsched_outbox_take($1, $2)"
_TAKE_ASYNC = f"{_TAKE} {ASYNC_COMMIT}"


async def enqueue(conn: asyncpg.Connection, kind: str, dedupe_key: str, payload: dict[str, Any], *,
                  not_before: datetime | None = None, appointment_id: int | None = None) -> bool:
    """Add one side effect in ``conn``'s transaction; False when ``dedupe_key`` already exists.

    ``payload`` must be JSON-serialisable (it is stored as jsonb; keep patient data out of
    anything the worker logs). ``not_before`` delays the first attempt (e.g. a reminder).
    """
    status = await conn.execute(_ENQUEUE, kind, dedupe_key, payload, not_before, appointment_id)
    return status.endswith(" 1")


async def take(conn: asyncpg.Connection, kind: str, limit: int, *, wait_for_disk: bool = True) -> int:
    """Move up to ``limit`` of the oldest intake rows of ``kind`` into the outbox (``pending``,
    due at their ``not_before`` or when they were queued); returns how many left the intake.

    0 also when another worker is moving rows of that kind at this moment (one at a time keeps
    the outbox ids in intake order). ``wait_for_disk=False`` (outside a transaction block
    only): the move commits without waiting for the disk; the outbox worker's next claim, which
    does wait, makes it durable.
    """
    return await conn.fetchval(_TAKE if wait_for_disk else _TAKE_ASYNC, kind, limit)


def defer(exchange: Any, kind: str, dedupe_key: str, payload: dict[str, Any], *,
          not_before: datetime | None = None, appointment_id: int | None = None) -> None:
    """Queue one side effect with the exchange's transaction, written when it commits.

    The unit of work appends every row its stages deferred to the intake in one statement sent
    with the COMMIT (``deferred``), so a message costs no round trip of its own for its outbox
    rows; rows of a message whose effects are rolled back are never written. Same semantics as
    ``enqueue`` otherwise (``dedupe_key`` keeps the first row, applied when the worker moves it).
    """
    deferred.add(exchange, deferred.OUTBOX, {
        "kind": kind, "dedupe_key": dedupe_key, "payload": payload,
        "not_before": not_before.isoformat() if not_before is not None else None,
        "appointment_id": appointment_id})
