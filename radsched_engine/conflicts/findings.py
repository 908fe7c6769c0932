"""Stored findings: the JSON in ``appointments.conflicts``, its mirror on the other side, the block reject.

One entry per finding::

    {"rule": "RES-ROOM-OVERLAP", "severity": "block", "source": "rules",
     "message": "Resource CT1 is already booked at an overlapping time.",
     "other": "scheduling|F:1001", "other_id": 17, "details": {...}}

``other`` is the conflicting appointment's stored key (``appointments.appointment_key``),
``other_id`` its row id when known. A mirror is the same finding written on the other
appointment (``other`` = this one, ``details.reverse`` = true), so a conflict shows on both
sides; it is removed when either appointment is rechecked or ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import Reject
from ..rules import Finding
from ..rules.model import RANK

# Where a block finding points in the message (ERR-2), by rule.
_LOCATION = {"RES-ROOM-OVERLAP": "AIL-3", "RES-STAFF-OVERLAP": "AIP-3", "OUTSIDE-CALENDAR": "AIL-3",
             "STAT-DISPLACES-ROUTINE": "AIL-3"}
CONFLICT_CODE = 205      # HL7 table 0357 "Duplicate key identifier": the slot is already held


def entry(finding: Finding, ids: Mapping[str, int]) -> dict[str, Any]:
    """The stored JSON of one finding (``ids``: appointment key -> row id, for ``other_id``)."""
    data = finding.to_json()
    data["other_id"] = ids.get(finding.other) if finding.other else None
    return data


def mirror(finding: Finding, key: str, own_id: int | None) -> dict[str, Any]:
    """The entry written on the other appointment of ``finding`` (found while checking ``key``)."""
    details = dict(entry(finding, {})["details"])
    details["reverse"] = True
    severity = finding.severity
    message = finding.message
    if details.get("displaced") is not None:          # R7: the other one is the displaced booking
        severity = str(details.get("displaced_severity") or "warn")
        message = ("A STAT booking takes this appointment's slot: reschedule it and notify the "
                   "patient.")
    return {"rule": finding.rule, "severity": severity, "message": message, "other": key,
            "other_id": own_id, "source": finding.source, "details": details}


def mirrors(findings: Iterable[Finding], key: str, own_id: int | None,
            ids: Mapping[str, int]) -> dict[int, list[dict[str, Any]]]:
    """Mirror entries to append, by the other appointment's id (one per rule and pair)."""
    out: dict[int, list[dict[str, Any]]] = {}
    seen: set[tuple[int, str]] = set()
    for f in findings:
        other_id = ids.get(f.other) if f.other else None
        if other_id is None or (other_id, f.rule) in seen:
            continue
        seen.add((other_id, f.rule))
        out.setdefault(other_id, []).append(mirror(f, key, own_id))
    return out


def blocking(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "block"]


def worst(findings: Iterable[Finding]) -> str | None:
    return max((f.severity for f in findings), key=lambda s: RANK.get(s, -1), default=None)


def _sender_id(key: str) -> str:
    """``F:1001`` from ``channel|F:1001`` (the id the sender knows the appointment by)."""
    return key.partition("|")[2] or key


def reject(findings: list[Finding], ids: Mapping[str, int]) -> Reject:
    """The AE for ``policy: block``: HL7 error 205, naming the rule and the other appointment.

    The diagnostic (ERR-7, also logged) names the other appointment by its row id only; the
    text for people (ERR-8, MSA-3) by the id the sender uses (``F:<SCH-2>`` / ``P:<SCH-1>``).
    """
    first = findings[0]
    other = first.other
    where = _LOCATION.get(first.rule, "SCH-11")
    more = f" (+{len(findings) - 1} more)" if len(findings) > 1 else ""
    if other:
        other_id = ids.get(other)
        text = (f"scheduling conflict {first.rule} ({first.severity}) with appointment "
                f"#{other_id if other_id is not None else '?'}{more}")
        user = f"Conflict {first.rule} with appointment {_sender_id(other)}: {first.message}{more}"
    else:
        text = f"scheduling conflict {first.rule} ({first.severity}){more}"
        user = f"Conflict {first.rule}: {first.message}{more}"
    return Reject(CONFLICT_CODE, text, where, user_text=user)
