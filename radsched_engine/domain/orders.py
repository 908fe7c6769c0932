"""ORM^O01 / OMI^O23 messages to order events: one order per ORC with its OBR, TQ1 and IPC."""

from __future__ import annotations

from datetime import datetime, tzinfo

from ..errors import Reject
from ..hl7.message import Message
from .model import Order, OrderEvent
from .patient import patient_from
from .read import Reader, name, pad
from .values import Notes, ident, priority, text


def orders_of(message: Message, tz: tzinfo, notes: Notes) -> OrderEvent:
    """The orders of the message (AE 100 without ORC), its patient and its time."""
    if not message.has("ORC"):
        raise Reject(100, f"{message.message_code} message without ORC segment", "ORC",
                     user_text="The order message has no ORC segment.")
    r = Reader(message, tz, notes)
    ids = message.segment_ids
    rows = {sid: message.split_fields(sid) for sid in ("ORC", "OBR", "TQ1", "IPC")}
    seen = dict.fromkeys(rows, 0)
    orcs: list[tuple[list[str], dict[str, list[str] | None]]] = []
    for sid in ids:               # each ORC's group: the first OBR, TQ1 and IPC before the next ORC
        if sid not in seen:
            continue
        fields = rows[sid][seen[sid]]
        seen[sid] += 1
        if sid == "ORC":
            orcs.append((fields, {"OBR": None, "TQ1": None, "IPC": None}))
        elif orcs and orcs[-1][1][sid] is None:
            orcs[-1][1][sid] = fields
    orders = [_order(orc, seq, group["OBR"], group["TQ1"], group["IPC"], r)
              for seq, (orc, group) in enumerate(orcs, 1)]
    msh7 = message.values("MSH", 7)[0]
    return OrderEvent(patient=patient_from(message, notes, reader=r), orders=tuple(orders),
                      event_time=r.ts(r.leaf(msh7), "MSH", 7, 1, "message time"),
                      warnings=notes.texts)


def _order(orc_fields: list[str], seq: int, obr_fields: list[str] | None,
           tq1_fields: list[str] | None, ipc_fields: list[str] | None, r: Reader) -> Order:
    leaf, comps = r.leaf, r.comps
    orc = pad(orc_fields, 13)
    obr = pad(obr_fields or [], 37)
    ipc = pad(ipc_fields or [], 6)
    tq1 = pad(tq1_fields, 10) if tq1_fields is not None else None
    orc7 = pad(comps(orc[7]), 6)
    obr27 = pad(comps(obr[27]), 6)
    obr4 = pad(comps(obr[4]), 3)

    def first_time(*sources: tuple[str, str, int, int, str]) -> datetime | None:
        for seg_id, value, field, comp, label in sources:
            if value.strip():
                found = r.ts(value, seg_id, field, comp, label, sequence=seq)
                if found is not None:
                    return found
        return None

    return Order(
        control=leaf(orc[1]).strip(),
        placer_order_number=ident(leaf(orc[2])) or ident(leaf(obr[2])),
        filler_order_number=ident(leaf(orc[3])) or ident(leaf(obr[3])),
        status=text(leaf(orc[5])),
        procedure_code=text(obr4[0]),
        procedure_text=text(obr4[1]),
        coding_system=text(obr4[2]),
        modality=text(leaf(ipc[5]) or leaf(obr[24])),
        accession=text(leaf(ipc[1]) or leaf(obr[18])),
        priority=priority(leaf(tq1[9]) if tq1 is not None else "", obr27[5], orc7[5], leaf(obr[5])),
        requested_at=first_time(("OBR", leaf(obr[7]), 7, 1, "OBR-7 observation time"),
                                ("OBR", leaf(obr[36]), 36, 1, "OBR-36 scheduled time"),
                                ("TQ1", leaf(tq1[7]) if tq1 is not None else "", 7, 1, "TQ1-7 start"),
                                ("OBR", obr27[3], 27, 4, "OBR-27 start"),
                                ("ORC", orc7[3], 7, 4, "ORC-7 start")),
        ordering_provider=name(comps(orc[12])) or (name(comps(obr[16])) if obr_fields is not None else ""),
        reason=(r.coded_text(obr[31]) or text(leaf(obr[13]))) if obr_fields is not None else "",
        transaction_time=first_time(("ORC", leaf(orc[9]), 9, 1, "ORC-9 transaction time")),
    )
