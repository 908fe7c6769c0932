"""``radsched-engine outbox``: list waiting or dead-lettered outbox rows and put a dead one back in line.

Shows ids, kinds, states, attempts, timing and the (PHI-free) last error; never payloads, which
hold phone numbers and texts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

_LIST = """
SELECT id, kind, status, attempts, created_at, next_attempt_at, updated_at, last_error,
       payload->>'event' AS event, result->>'reason' AS reason
FROM outbox WHERE status = ANY($1::text[]) ORDER BY id LIMIT $2
"""
# Rows still in the intake (migration 0402: written with their message, not yet moved into the
# outbox by a worker), listed after the outbox's own with status "intake" and no outbox id.
_LIST_INTAKE = """
SELECT NULL::bigint AS id, kind, 'intake' AS status, 0 AS attempts, created_at,
       coalesce(not_before, created_at) AS next_attempt_at, created_at AS updated_at,
       NULL::text AS last_error, payload->>'event' AS event, NULL::text AS reason
FROM outbox_intake ORDER BY kind, id LIMIT $1
"""
_SUMMARY = """
SELECT kind, status, n FROM (
    SELECT kind, status, count(*) AS n FROM outbox
    WHERE status IN ('pending', 'retry', 'sending', 'dead') GROUP BY kind, status
    UNION ALL
    SELECT kind, 'intake', count(*) FROM outbox_intake GROUP BY kind
) AS counts ORDER BY kind, status
"""
# A dead row whose last attempt may have reached the recipient goes back as 'sending' with an
# expired lease, so the worker reconciles before sending again; others go back as 'retry'.
_RETRY = """
UPDATE outbox SET status = CASE WHEN coalesce((result->>'in_doubt')::boolean, false)
                               THEN 'sending' ELSE 'retry' END,
                  attempts = 0, next_attempt_at = now(),
                  locked_until = CASE WHEN coalesce((result->>'in_doubt')::boolean, false)
                                      THEN now() END,
                  last_error = 'retried by operator: ' || coalesce(last_error, ''), updated_at = now()
WHERE id = $1 AND status = 'dead'
RETURNING status
"""


async def list_rows(conn: asyncpg.Connection, *, dead: bool = False,
                    limit: int = 100) -> list[dict[str, Any]]:
    statuses = ["dead"] if dead else ["pending", "retry", "sending"]
    rows = [dict(r.items()) for r in await conn.fetch(_LIST, statuses, limit)]
    if not dead and len(rows) < limit:
        rows += [dict(r.items()) for r in await conn.fetch(_LIST_INTAKE, limit - len(rows))]
    return rows


async def summary(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    return [dict(r.items()) for r in await conn.fetch(_SUMMARY)]


async def retry_dead(conn: asyncpg.Connection, row_id: int) -> str | None:
    """Put dead row ``row_id`` back in line (attempts reset); its new status, or None if not dead."""
    return await conn.fetchval(_RETRY, row_id)


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    seconds = int((now - moment).total_seconds())
    sign = "" if seconds >= 0 else "in "
    seconds = abs(seconds)
    text = (f"{seconds}s" if seconds < 120 else f"{seconds // 60}m" if seconds < 7200
            else f"{seconds // 3600}h" if seconds < 172800 else f"{seconds // 86400}d")
    return f"{sign}{text}" if sign else f"{text} ago"


def render(rows: list[dict[str, Any]], counts: list[dict[str, Any]], *, dead: bool,
           now: datetime | None = None) -> str:
    """A plain table of rows, with per-kind counts first."""
    now = now or datetime.now(UTC)
    lines = ["outbox: " + (", ".join(f"{c['kind']} {c['status']} {c['n']}" for c in counts) or "empty")]
    if not rows:
        lines.append("no dead-lettered rows" if dead else "nothing waiting")
        return "\n".join(lines)
    when = "failed" if dead else "next attempt"
    lines.append(f"{'id':>8}  {'kind':<12} {'event':<5} {'status':<8} {'tries':>5}  {'queued':<10} "
                 f"{when:<13} last error")
    for r in rows:
        moment = r["updated_at"] if dead else r["next_attempt_at"]
        error = (r["last_error"] or r["reason"] or "").replace("\n", " ")
        lines.append(f"{r['id'] or '-':>8}  {r['kind']:<12.12} {(r['event'] or '-'):<5.5} {r['status']:<8} "
                     f"{r['attempts']:>5}  {_ago(r['created_at'], now):<10} {_ago(moment, now):<13} "
                     f"{error[:100]}")
    return "\n".join(lines)


async def run(url: str, *, dead: bool = False, retry: int | None = None, limit: int = 100) -> tuple[int, str]:
    """The command's work against the database at ``url``: (exit code, text to print)."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        if retry is not None:
            status = await retry_dead(conn, retry)
            if status is None:
                return 1, f"outbox row {retry} is not dead-lettered (nothing changed)"
            how = " (after checking it was not already delivered)" if status == "sending" else ""
            return 0, f"outbox row {retry} will be delivered again{how}"
        rows = await list_rows(conn, dead=dead, limit=limit)
        return 0, render(rows, await summary(conn), dead=dead)
    finally:
        await conn.close()
