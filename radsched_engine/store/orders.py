"""Orders (ORM^O01 / OMI^O23): order control codes applied to rows keyed by placer/filler number."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from ..domain.model import NULL, Order, OrderEvent
from ..errors import Location, Reject
from .appointments import lock_keys
from .mapping import URGENCY, patient_name

# Table 0119 codes handled on an inbound order feed (notes §6.2 policy) → action.
CONTROL_ACTIONS = {"NW": "new", "XO": "update", "XX": "update", "SC": "update",
                   "CA": "cancel", "OC": "cancel", "CR": "cancel",
                   "DC": "discontinue", "OD": "discontinue", "HD": "hold", "OH": "hold",
                   "RL": "release"}
# ORC-5 (table 0038) → stored status.
ORDER_STATUS = {"A": "IN_PROGRESS", "IP": "IN_PROGRESS", "CA": "CANCELLED", "CM": "COMPLETED",
                "DC": "DISCONTINUED", "ER": "ERROR", "HD": "HOLD", "RP": "REPLACED",
                "SC": "SCHEDULED"}

_COLUMNS = ("placer_order_number", "filler_order_number", "control", "status", "status_raw",
            "held_from_status", "procedure_code", "procedure_text", "coding_system", "modality",
            "accession", "urgency", "requested_at", "ordering_provider", "reason", "patient_id",
            "patient_key", "patient_name", "last_event_time")
_N = len(_COLUMNS)
_LINK = ("(SELECT a.id FROM appointments AS a WHERE a.order_refs && ${n}::text[] "
         "AND a.order_refs <> '{{}}' ORDER BY a.active DESC, a.id DESC LIMIT 1)")
_INSERT = (f"INSERT INTO orders (channel, sending_application, sending_facility, {', '.join(_COLUMNS)}, "
           f"appointment_id) VALUES ($1, $2, $3, {', '.join(f'${i + 4}' for i in range(_N))}, "
           f"{_LINK.format(n=_N + 4)}) RETURNING *")
_UPDATE = (f"UPDATE orders AS o SET {', '.join(f'{c} = ${i + 2}' for i, c in enumerate(_COLUMNS))}, "
           f"appointment_id = coalesce({_LINK.format(n=_N + 2)}, o.appointment_id), "
           "updated_at = now() WHERE o.id = $1 RETURNING *")
_FETCH = ("SELECT * FROM orders WHERE placer_order_number = ANY ($1::text[]) "
          "OR filler_order_number = ANY ($2::text[]) FOR UPDATE")


@dataclass(frozen=True, slots=True)
class OrderOutcome:
    order_id: int | None
    stale_since: datetime | None      # set when the order was left alone as out of date
    location: Location


async def claim_message(conn: asyncpg.Connection, lock: int, channel: str, application: str,
                        facility: str, control_id: str, content_hash: bytes) -> tuple[str, str | None]:
    """(state, first ACK code): 'new', 'duplicate' or 'reused' for this (channel, sender, MSH-10)."""
    row = await conn.fetchrow("SELECT * FROM radsched_claim_message($1, $2, $3, $4, $5, $6)",
                              lock, channel, application, facility, control_id, content_hash)
    return row["state"], row["ack_code"]


def _number(value: str | None) -> str | None:
    return value if value and value != NULL else None


def _check(event: OrderEvent) -> None:
    """Refuse the whole message before any write: unknown ORC-1, or an order without numbers."""
    for seq, order in enumerate(event.orders, 1):
        code = order.control.upper()
        if code not in CONTROL_ACTIONS:
            raise Reject(103, f"order control {order.control!r} is not handled",
                         Location("ORC", seq, 1, 1), user_text="Unsupported order control code.")
        if not _number(order.placer_order_number) and not _number(order.filler_order_number):
            raise Reject(101, "order number missing: neither ORC-2 nor ORC-3 is valued",
                         Location("ORC", seq, 2, 1))


async def apply_orders(conn: asyncpg.Connection, event: OrderEvent, *, channel: str,
                       sending_application: str, sending_facility: str) -> list[OrderOutcome]:
    """Apply every ORC of the message in order (see the persist stage's table)."""
    _check(event)
    placers = [p for o in event.orders if (p := _number(o.placer_order_number))]
    fillers = [f for o in event.orders if (f := _number(o.filler_order_number))]
    await lock_keys(conn, [f"order|P:{p}" for p in placers] + [f"order|F:{f}" for f in fillers])
    known: dict[int, dict[str, Any]] = {
        r["id"]: dict(r.items()) for r in await conn.fetch(_FETCH, placers, fillers)}
    results = []
    for seq, order in enumerate(event.orders, 1):
        loc = Location("ORC", seq, 1, 1)
        existing = _match(known, order, seq)
        action = CONTROL_ACTIONS[order.control.upper()]
        when = order.transaction_time or event.event_time
        if existing is None:
            if action != "new":
                field = 2 if _number(order.placer_order_number) else 3
                raise Reject(204, f"no order with this ORC-{field} number to {action}",
                             Location("ORC", seq, field, 1),
                             user_text="The order to change was never received here.")
            values = _values(None, order, event, action, when)
            row = await conn.fetchrow(_INSERT, channel, sending_application, sending_facility,
                                      *values, _refs(order))
        else:
            if action == "new" and not _same_order(existing, order, event):
                raise Reject(205, "an order with this number exists for another patient or "
                             "procedure",
                             Location("ORC", seq, 2, 1),
                             user_text="An order with this number already exists.")
            stored = existing["last_event_time"]
            if when is not None and stored is not None and when < stored:
                results.append(OrderOutcome(existing["id"], stored, Location.parse("ORC-9", seq)))
                continue
            values = _values(existing, order, event, action, when)
            row = await conn.fetchrow(_UPDATE, existing["id"], *values, _refs(order))
        known[row["id"]] = dict(row.items())
        results.append(OrderOutcome(row["id"], None, loc))
    return results


def _refs(order: Order) -> list[str]:
    refs = []
    if p := _number(order.placer_order_number):
        refs.append(f"P:{p}")
    if f := _number(order.filler_order_number):
        refs.append(f"F:{f}")
    return refs


def _match(known: dict[int, dict[str, Any]], order: Order, seq: int) -> dict[str, Any] | None:
    """The stored order these numbers name; AE 205 when they name two different ones."""
    placer, filler = _number(order.placer_order_number), _number(order.filler_order_number)
    by_placer = next((r for r in known.values() if placer and r["placer_order_number"] == placer), None)
    by_filler = next((r for r in known.values() if filler and r["filler_order_number"] == filler), None)
    if by_placer and by_filler and by_placer["id"] != by_filler["id"]:
        raise Reject(205, "ORC-2 and ORC-3 name two different stored orders", Location("ORC", seq, 3, 1))
    found = by_placer or by_filler
    if found is not None:
        for column, sent, field in (("placer_order_number", placer, 2),
                                    ("filler_order_number", filler, 3)):
            if sent and found[column] not in (None, sent):
                raise Reject(205, f"this order is stored with another ORC-{field} number",
                             Location("ORC", seq, field, 1))
    return found


def _same_order(existing: dict[str, Any], order: Order, event: OrderEvent) -> bool:
    """A repeated NW for the order we have (same patient and procedure) rather than a clash."""
    key = event.patient.key if event.patient is not None and event.patient.mrn else ""
    same_patient = not key or not existing["patient_key"] or existing["patient_key"] == key
    code = order.procedure_code if order.procedure_code != NULL else ""
    same_procedure = not code or not existing["procedure_code"] or existing["procedure_code"] == code
    return same_patient and same_procedure


def _values(old: dict[str, Any] | None, order: Order, event: OrderEvent, action: str,
            when: datetime | None) -> list[Any]:
    """Column values in ``_COLUMNS`` order: what the order sends, else what is stored."""
    prev = old or {}

    def pick(column: str, sent: str | None, default: Any = "") -> Any:
        if sent == NULL:
            return ""
        if sent:
            return sent
        return prev.get(column, default) if old is not None else default

    status_raw = order.status if order.status not in ("", NULL) else None
    status, held = _status(prev.get("status"), prev.get("held_from_status"), action, status_raw)
    patient = event.patient
    last = prev.get("last_event_time")
    return [
        pick("placer_order_number", _number(order.placer_order_number), None),
        pick("filler_order_number", _number(order.filler_order_number), None),
        order.control.upper(), status, status_raw or prev.get("status_raw"), held,
        pick("procedure_code", order.procedure_code),
        pick("procedure_text", order.procedure_text),
        pick("coding_system", order.coding_system),
        pick("modality", order.modality),
        pick("accession", order.accession),
        URGENCY.get(order.priority, "routine") if old is None or order.priority != "R"
        else prev["urgency"],
        order.requested_at or prev.get("requested_at"),
        pick("ordering_provider", order.ordering_provider, None),
        pick("reason", order.reason, None),
        patient.mrn if patient is not None and patient.mrn != NULL else prev.get("patient_id", ""),
        (patient.key if patient.mrn else "") if patient is not None else prev.get("patient_key", ""),
        patient_name(patient) if patient is not None else prev.get("patient_name", ""),
        max(t for t in (when, last) if t is not None) if (when or last) else None,
    ]


def _status(current: str | None, held_from: str | None, action: str,
            status_raw: str | None) -> tuple[str, str | None]:
    """(status, held_from_status) after ``action``."""
    sent = ORDER_STATUS.get((status_raw or "").upper())
    if action == "new":
        return sent or "NEW", None
    if action == "update":
        return sent or current or "NEW", held_from
    if action == "cancel":
        return "CANCELLED", None
    if action == "discontinue":
        return "DISCONTINUED", None
    if action == "hold":
        return "HOLD", held_from if current == "HOLD" else current
    # release
    return (held_from or "NEW", None) if current == "HOLD" else (current or "NEW", None)
