"""``radsched-engine conflicts APPOINTMENT``: an appointment's stored findings, as a table or JSON.

APPOINTMENT is the row id, the stored key (``scheduling|F:1001``) or the sender's id
(``F:1001``, ``P:55``, or a bare ``1001`` looked up as filler, then placer id in every channel).
Shows rule, severity, source (rules / ai), the other appointment and the message; never patient
data.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from ..rules.model import RANK
from ..store.conflicts import find_appointments, keys_to_ids

_ORDER = {"rules": 0, "ai": 1}


def _entries(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        value = json.loads(value)
    return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


def _sorted(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(entries, key=lambda e: (-RANK.get(str(e.get("severity")), -1),
                                          _ORDER.get(str(e.get("source")), 2), str(e.get("rule"))))


def _other(entry: dict[str, Any], ids: dict[str, int]) -> str:
    key = entry.get("other")
    if not key:
        return "-"
    ident = entry.get("other_id") or ids.get(str(key))
    text = f"#{ident} {key}" if ident else str(key)
    return text + (" (reverse)" if (entry.get("details") or {}).get("reverse") else "")


def render(appointment: dict[str, Any], entries: list[dict[str, Any]], ids: dict[str, int]) -> str:
    """One appointment's findings as an aligned table."""
    start, end = appointment["datetime"], appointment["end_at"]
    head = (f"appointment #{appointment['id']} {appointment['appointment_key']}"
            + (f" (also {appointment['alt_key']})" if appointment.get("alt_key") else "")
            + f"  {start:%Y-%m-%d %H:%M}-{end:%H:%M} {start:%Z}  {appointment['status']}")
    if not entries:
        note = "no findings" if appointment.get("conflicts") is not None else "not checked"
        return f"{head}\n  {note}"
    rows = [("SEVERITY", "SOURCE", "RULE", "OTHER", "MESSAGE")]
    rows += [(str(e.get("severity", "")), str(e.get("source", "")), str(e.get("rule", "")),
              _other(e, ids), str(e.get("message", ""))) for e in _sorted(entries)]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  " + "  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
             for r in rows]
    return "\n".join([head, *lines])


async def report(conn: asyncpg.Connection, reference: str, *, channels: Sequence[str] = (),
                 as_json: bool = False) -> tuple[int, str]:
    """(exit code, text) for ``radsched-engine conflicts``: 0 when found, 1 when not."""
    found = await find_appointments(conn, reference, channels)
    if not found:
        return 1, f"no appointment matches {reference!r}"
    if as_json:
        return 0, json.dumps([{"id": a["id"], "appointment_key": a["appointment_key"],
                               "status": a["status"], "conflicts": _entries(a["conflicts"])}
                              for a in found], indent=2, default=str)
    keys = {str(e["other"]) for a in found for e in _entries(a["conflicts"])
            if e.get("other") and not e.get("other_id")}
    ids = await keys_to_ids(conn, keys) if keys else {}
    return 0, "\n\n".join(render(a, _entries(a["conflicts"]), ids) for a in found)


async def run(url: str, reference: str, *, channels: Sequence[str] = (),
              as_json: bool = False) -> tuple[int, str]:
    """Connect to ``url`` and ``report``."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return await report(conn, reference, channels=channels, as_json=as_json)
    finally:
        await conn.close()
