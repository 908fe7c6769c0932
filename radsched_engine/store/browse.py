"""``radsched-engine journal``: the message journal from a terminal (Mirth's message browser, trimmed).

Without an id: the newest journal rows received within ``since`` (default 24 hours), filtered by
outcome, channel, MSH-10, message type or a text the message contains (an MRN, an appointment
id: matched in the stored bytes), one line each (id, received, channel, peer, type, MSH-10,
outcome, ACK, HL7 error code and location, error text), after a count per outcome in the window.
The listing shows no patient data: ``raw`` is only searched, never shown.

With an id: that row's columns and warnings, then the message one segment per line. That prints
patient data, as psql would: it is for the operators who may read the journal. ``raw=True``
returns the stored bytes exactly, for a file that ``radsched-engine send`` can deliver again
(reprocessing: a resend of a rejected message is processed anew; of an applied one, answered as a
duplicate).

Reads only; the window's lower bound uses the BRIN index on ``received_at``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from .db import _init_connection

OUTCOMES = ("accepted", "filtered", "duplicate", "rejected", "retry", "error")

_FILTERS = """
received_at >= $1
AND ($2::text[] IS NULL OR outcome = ANY ($2))
AND ($3::text IS NULL OR channel = $3)
AND ($4::text IS NULL OR control_id = $4)
AND ($5::text IS NULL OR message_type = $5)
AND ($6::bytea IS NULL OR position($6 IN raw) > 0)
"""
_LIST = f"""
SELECT id, channel, received_at, peer, control_id, message_type, outcome, ack_code, error_code,
       error_location, error
FROM hl7_messages WHERE {_FILTERS}
ORDER BY received_at DESC, id DESC LIMIT $7
"""
_COUNTS = f"""
SELECT outcome, count(*) AS n FROM hl7_messages WHERE {_FILTERS} GROUP BY outcome
"""
_ONE = "SELECT * FROM hl7_messages WHERE id = $1"

_SPAN = re.compile(r"^(\d+)\s*([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def since_time(text: str, now: datetime | None = None) -> datetime:
    """``30m``, ``24h``, ``7d`` (back from now) or an ISO 8601 date/time (UTC when it has no
    offset); ValueError says what is allowed."""
    now = now or datetime.now(UTC)
    value = text.strip()
    span = _SPAN.match(value)
    if span:
        return now - timedelta(**{_UNITS[span.group(2)]: int(span.group(1))})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"--since {text!r}: use 30m, 24h, 7d or an ISO 8601 date/time "
                         "(2026-11-21 or 2026-11-21T08:00+01:00)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _error(row: dict[str, Any]) -> str:
    if row["error_code"] is None and not row["error"]:
        return ""
    where = f" {row['error_location']}" if row["error_location"] else ""
    code = f"{row['error_code']}{where}: " if row["error_code"] is not None else ""
    return (code + (row["error"] or "")).replace("\r", " ").replace("\n", " ")


def render_list(rows: Sequence[dict[str, Any]], counts: dict[str, int], since: datetime) -> str:
    """The window's counts per outcome, then one line per row (newest first)."""
    total = sum(counts.values())
    summary = ", ".join(f"{o} {counts[o]}" for o in OUTCOMES if counts.get(o))
    lines = [f"journal since {_when(since)}: {total} message(s)" + (f" ({summary})" if summary else "")]
    if not rows:
        return "\n".join(lines)
    table = [("ID", "RECEIVED", "CHANNEL", "PEER", "TYPE", "MSH-10", "OUTCOME", "ACK", "ERROR")]
    table += [(str(r["id"]), _when(r["received_at"]), r["channel"], r["peer"], r["message_type"] or "-",
               r["control_id"] or "-", r["outcome"], r["ack_code"] or "-", _error(r)[:120])
              for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(8)]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(t[:8], widths, strict=True)) + "  " + t[8]
              for t in table]
    if len(rows) < total:
        lines.append(f"(newest {len(rows)} of {total}; --limit, --since or a filter for others)")
    return "\n".join(line.rstrip() for line in lines)


def _segments(raw: bytes) -> list[str]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    text = text.strip("\x0b\x1c\r\n ")
    return [s for s in re.split(r"\r\n|\r|\n", text) if s]


def render_one(row: dict[str, Any]) -> str:
    """One journal row: its columns, warnings and the message one segment per line."""
    lines = [f"journal row {row['id']}",
             f"  channel         {row['channel']}",
             f"  received        {_when(row['received_at'])} from {row['peer'] or '-'}",
             f"  committed       {_when(row['committed_at'])}",
             f"  sender          {row['sending_application'] or '-'} / {row['sending_facility'] or '-'}",
             f"  type, MSH-10    {row['message_type'] or '-'}  {row['control_id'] or '-'}",
             f"  outcome, ACK    {row['outcome']}  {row['ack_code'] or '-'}"]
    if row["error_code"] is not None or row["error"]:
        lines.append(f"  error           {_error(row)}")
    for w in row["warnings"] or []:
        where = f" {w.get('location')}" if w.get("location") else ""
        lines.append(f"  warning         {w.get('code')}{where}: {w.get('text')}")
    if row["appointment_id"] is not None:
        lines.append(f"  appointment     #{row['appointment_id']}")
    raw = bytes(row["raw"])
    if not raw:
        lines.append("  (the message's bytes were pruned: retention.raw_days)")
    else:
        lines.append(f"  message         {len(raw)} bytes")
        lines += [f"    {segment}" for segment in _segments(raw)]
    return "\n".join(lines)


async def run(url: str, row_id: int | None = None, *, raw: bool = False, since: str = "24h",
              outcomes: Sequence[str] = (), channel: str | None = None, control_id: str | None = None,
              message_type: str | None = None, contains: str | None = None,
              limit: int = 50) -> tuple[int, str | bytes]:
    """The command's work against the database at ``url``: (exit code, text or raw bytes)."""
    if raw and row_id is None:
        return 2, "journal: --raw needs the id of the row to write"
    if limit < 1:
        return 2, f"journal: --limit {limit}: give a number of rows, 1 or more"
    unknown = sorted(set(outcomes) - set(OUTCOMES))
    if unknown:
        return 2, f"journal: unknown outcome {', '.join(unknown)} (one of: {', '.join(OUTCOMES)})"
    try:
        start = since_time(since)
    except ValueError as exc:
        return 2, f"journal: {exc}"
    try:
        conn = await asyncpg.connect(url, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return 1, f"journal: database cannot be used: {type(exc).__name__}: {str(exc)[:200]}"
    try:
        await _init_connection(conn)       # jsonb as Python objects, as the store's pool has it
        if row_id is not None:
            found = await conn.fetchrow(_ONE, row_id)
            if found is None:
                return 1, f"journal: no row {row_id}"
            return 0, bytes(found["raw"]) if raw else render_one(dict(found.items()))
        needle = contains.encode() if contains else None
        args = (start, list(outcomes) or None, channel, control_id, message_type, needle)
        rows = [dict(r.items()) for r in await conn.fetch(_LIST, *args, limit)]
        counts = {r["outcome"]: r["n"] for r in await conn.fetch(_COUNTS, *args)}
        return 0, render_list(rows, counts, start)
    except asyncpg.UndefinedTableError:
        return 1, "journal: the database has no journal yet: run radsched-engine migrate"
    finally:
        await conn.close()


__all__ = ["OUTCOMES", "render_list", "render_one", "run", "since_time"]
