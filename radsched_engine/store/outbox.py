"""Outbox writes: a durable side effect enqueued in the message's own transaction, at most once.

The ``outbox`` table (migration 0001) is shared by every kind of side effect (``sms``,
``ai_analysis``, ...). Row life cycle, for the worker that sends them:

- ``pending`` (new) / ``retry`` (failed, due again at ``next_attempt_at``);
- a worker claims due rows with ``SELECT ... WHERE status IN ('pending', 'retry', 'sending')
  AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT n FOR UPDATE SKIP LOCKED`` and
  sets ``status = 'sending'``, ``attempts = attempts + 1`` and ``locked_until =
  next_attempt_at = now() + lease``; a worker that dies mid-send leaves a ``sending`` row whose
  lease expires and which is claimed again (index ``outbox_due`` covers all three states);
- it ends as ``sent`` (``result``), ``skipped`` (``result`` says why), ``dead`` (gave up;
  ``last_error``) or ``cancelled``.

``dedupe_key`` is unique: enqueueing the same effect twice (a redelivered message, a retried
transaction) keeps the first row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from . import deferred

_ENQUEUE = deferred.OUTBOX_INSERT.format("($1, $2, $3::jsonb, coalesce($4, now()), $5)")


async def enqueue(conn: asyncpg.Connection, kind: str, dedupe_key: str, payload: dict[str, Any], *,
                  not_before: datetime | None = None, appointment_id: int | None = None) -> bool:
    """Add one side effect in ``conn``'s transaction; False when ``dedupe_key`` already exists.

    ``payload`` must be JSON-serialisable (it is stored as jsonb; keep patient data out of
    anything the worker logs). ``not_before`` delays the first attempt (e.g. a reminder).
    """
    status = await conn.execute(_ENQUEUE, kind, dedupe_key, payload, not_before, appointment_id)
    return status.endswith(" 1")


def defer(exchange: Any, kind: str, dedupe_key: str, payload: dict[str, Any], *,
          not_before: datetime | None = None, appointment_id: int | None = None) -> None:
    """Queue one side effect with the exchange's transaction, written when it commits.

    The unit of work inserts every row its stages deferred in one statement sent with the
    COMMIT (``deferred``), so a message costs no round trip of its own for its outbox rows;
    rows of a message whose effects are rolled back are never written. Same semantics as
    ``enqueue`` otherwise (``dedupe_key`` keeps the first row).
    """
    deferred.add(exchange, deferred.OUTBOX, {
        "kind": kind, "dedupe_key": dedupe_key, "payload": payload,
        "not_before": not_before.isoformat() if not_before is not None else None,
        "appointment_id": appointment_id})
