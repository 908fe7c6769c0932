"""SIU and ORM/OMI messages to the domain's events, following the notes' identity and timing policies."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, tzinfo

from ..errors import Location, Reject
from ..exchange import Exchange
from ..hl7.message import Message, Segment
from .model import AppointmentEvent, Order, OrderEvent, Resource
from .patient import patient_from
from .read import Reader
from .values import Notes, ident, nth, priority, text

# Per kind: segment id, start field, offset field, duration field (units = duration + 1).
_RESOURCES = (("service", "AIS", 4, 5, 7), ("location", "AIL", 6, 7, 9),
              ("personnel", "AIP", 6, 7, 9), ("general", "AIG", 8, 9, 11))
_LONGEST = timedelta(days=1)     # an end further away than this is taken for a typo


def event_for(exchange: Exchange, tz: tzinfo) -> AppointmentEvent | OrderEvent | None:
    """The event of the exchange's message (memoised in ``exchange.data["event"]``); None for others.

    Extraction warnings are added once to ``exchange.warnings`` (ERR severity W on the ACK).
    """
    if "event" in exchange.data:
        return exchange.data["event"]
    message = exchange.message
    if message is None:
        return None
    notes = Notes()
    event: AppointmentEvent | OrderEvent | None = None
    if message.message_code == "SIU":
        event = _appointment(message, tz, notes)
    elif message.type_trigger in ("ORM^O01", "OMI^O23"):
        event = _orders(message, tz, notes)
    exchange.warnings.extend(notes.problems)
    exchange.data["event"] = event
    return event


def appointment_from(message: Message, tz: tzinfo) -> AppointmentEvent:
    """The appointment event of an SIU message; AE 100 without SCH, 101 without ids, 102 bad start."""
    return _appointment(message, tz, Notes())


def order_event_from(message: Message, tz: tzinfo) -> OrderEvent:
    """The orders of an ORM^O01 / OMI^O23 message (one per ORC); AE 100 without ORC."""
    return _orders(message, tz, Notes())


# -- SIU ----------------------------------------------------------------------------------------
_EMPTY = [""] * 40


def _field(fields: list[str], n: int) -> str:
    return fields[n] if n < len(fields) else ""


def _pad(items: list[str], n: int) -> list[str]:
    """``items`` with at least ``n`` entries (absent ones ""): index without bounds checks."""
    return items if len(items) >= n else items + _EMPTY[:n - len(items)]


def _appointment(message: Message, tz: tzinfo, notes: Notes) -> AppointmentEvent:
    sch = message.segment("SCH")
    if sch is None:
        raise Reject(100, "SIU message without SCH segment", "SCH",
                     user_text="The message has no SCH (schedule) segment.")
    r = Reader(message, tz, notes)
    leaf = r.leaf
    s = _pad(sch.fields, 28)
    placer, filler = ident(leaf(s[1])), ident(leaf(s[2]))
    if placer is None and filler is None:
        raise Reject(101, "appointment id missing: neither SCH-1 (placer) nor SCH-2 (filler) is "
                          "valued", Location("SCH", 1, 2, 1, 1),
                     user_text="The appointment has no placer or filler id.")
    tq1_seg = message.segment("TQ1")
    tq1 = _pad(tq1_seg.fields, 10) if tq1_seg is not None else None
    sch11 = _pad(r.comps(s[11]), 6)
    start = None
    if tq1 is not None:
        start = r.ts(leaf(tq1[7]), "TQ1", 7, 1, "appointment start", fatal=True)
    if start is None:
        start = r.ts(sch11[3], "SCH", 11, 4, "appointment start", fatal=True)
    resources, raw_starts = _resources(message, r)
    if start is None:
        start = _start_from_resources(raw_starts, r)
    if start is not None and raw_starts:
        resources = _apply_offsets(resources, raw_starts, start, r)
    length = _duration(s, sch11, tq1, start, resources, r)
    pv1 = message.segment("PV1")
    kinds: dict[str, list[Resource]] = {"service": [], "location": [], "personnel": [], "general": []}
    for res in resources:
        kinds[res.kind].append(res)
    return AppointmentEvent(
        trigger=message.trigger,
        placer_id=placer,
        filler_id=filler,
        start=start,
        duration=length,
        patient=patient_from(message, notes, reader=r),
        status_raw=text(leaf(s[25])),
        priority=priority(leaf(tq1[9]) if tq1_seg else "", sch11[5]),
        reason=_coded_text(r, s[7]) or _coded_text(r, s[6]),
        notes=_notes_after(message, sch, r) if message.has("NTE") else "",
        referring_physician=(_name(r.comps(_field(pv1.fields, 8))) if pv1 else "")
        or _name(r.comps(s[12])),
        placer_order_numbers=_ids(r, s[26]) if s[26] else (),
        filler_order_numbers=_ids(r, s[27]) if s[27] else (),
        services=tuple(kinds["service"]),
        locations=tuple(kinds["location"]),
        personnel=tuple(kinds["personnel"]),
        general=tuple(kinds["general"]),
        event_time=_event_time(message, r),
        warnings=notes.texts,
    )


def _coded_text(r: Reader, value: str) -> str:
    """``values.coded_text`` of a raw field value: its text component, else its code."""
    if not value:
        return ""
    comps = r.comps(value)
    return text((comps[1] if len(comps) > 1 else "") or comps[0])


def _name(comps: list[str]) -> str:
    """``values.person_name`` of an XCN's components."""
    n = len(comps)
    if n < 2:
        return (ident(comps[0]) or "") if comps else ""
    parts = [comps[c - 1].strip() if c <= n else "" for c in (6, 3, 2)]
    name = " ".join(p for p in parts if p and p != '""')
    return name or ident(comps[0]) or ""


def _ids(r: Reader, value: str) -> tuple[str, ...]:
    found = []
    for rep in r.reps(value):
        v = ident(r.leaf(rep))
        if v:
            found.append(v)
    return tuple(found)


def _notes_after(message: Message, sch: Segment, r: Reader) -> str:
    """NTE text that directly follows SCH (or its TQ1): the appointment's notes."""
    lines: list[str] = []
    ids = message.segment_ids
    for i in range(sch.index + 1, len(ids)):
        sid = ids[i]
        if sid == "TQ1":
            continue
        if sid != "NTE":
            break
        lines.extend(r.leaf(rep) for rep in r.reps(message.at(i).field(3)))
    return "\n".join(line.strip() for line in lines if line.strip() and line.strip() != '""')


def _resource_text(kind: str, f3: list[str]) -> tuple[str, str, str]:
    """``(code, text, coding system)`` of a resource segment's field 3 (its components, padded to 9)."""
    if kind == "location":
        point, room = f3[0].strip(), f3[1].strip()
        rid = point or room
        described = f3[8].strip()
        extra = [described] if described else [room if point else "", f3[3].strip()]
        return text(rid), " ".join(e for e in extra if e and e != rid), ""
    if kind == "personnel":
        return text(f3[0]), _name(f3) if f3[1].strip() else "", ""
    return text(f3[0]), text(f3[1]), text(f3[2])


# Per kind: labels of its start, duration and start offset (in warnings and errors).
_LABELS = {seg_id: (f"{seg_id} start", f"{seg_id} duration", f"{seg_id} start offset")
           for _k, seg_id, _s, _o, _d in _RESOURCES}


def _resources(message: Message,
               r: Reader) -> tuple[list[Resource], list[tuple[Segment, int, int]]]:
    """Resources from AIS/AIL/AIP/AIG in message order, plus where each one's start was sent."""
    found: list[tuple[int, Resource, tuple[Segment, int, int]]] = []
    leaf, comps, ts, duration = r.leaf, r.comps, r.ts, r.duration
    for kind, seg_id, start_f, _offset_f, dur_f in _RESOURCES:
        if not message.has(seg_id):
            continue
        start_label, dur_label, _ = _LABELS[seg_id]
        for seq, seg in enumerate(message.all(seg_id), 1):
            f = _pad(seg.fields, dur_f + 2)
            rid, label, system = _resource_text(kind, _pad(comps(f[3]), 9))
            if not rid and not label:
                continue
            role = "" if kind == "service" else (leaf(f[4]).strip() or leaf(f[4], 2).strip())
            found.append((seg.index, Resource(
                kind=kind, code=rid, text=label, coding_system=system, role=role,
                action=leaf(f[2]).strip().upper(),
                start=ts(leaf(f[start_f]), seg_id, start_f, 1, start_label, sequence=seq),
                duration=duration(leaf(f[dur_f]), leaf(f[dur_f + 1]), seg_id, dur_f, 1, dur_label,
                                  sequence=seq),
            ), (seg, start_f, seq)))
    if len(found) > 1:
        found.sort(key=lambda item: item[0])
    return [x for _, x, _ in found], [w for _, _, w in found]


def _start_from_resources(raw_starts: list[tuple[Segment, int, int]], r: Reader) -> datetime | None:
    """Cascade AIS-4 → AIL-6 → AIP-6 → AIG-8; the one used must be well-formed (else AE 102)."""
    for seg_id in ("AIS", "AIL", "AIP", "AIG"):
        for seg, field, seq in raw_starts:
            if seg.id == seg_id:
                value = r.leaf(seg.field(field))
                if value.strip():
                    return r.ts(value, seg_id, field, 1, "appointment start", fatal=True,
                                sequence=seq)
    return None


_OFFSETS = {kind: off for kind, _sid, _s, off, _d in _RESOURCES}


def _apply_offsets(resources: list[Resource], raw_starts: list[tuple[Segment, int, int]],
                   start: datetime, r: Reader) -> list[Resource]:
    """A resource without its own start but with a start offset (AIS-5/6 ...) starts relative to ``start``."""
    result = []
    for res, (seg, _field, seq) in zip(resources, raw_starts, strict=True):
        if res.start is None:
            off_f = _OFFSETS[res.kind]
            f = seg.fields
            value = r.leaf(_field_of(f, off_f))
            if value.strip():
                offset = r.duration(value, r.leaf(_field_of(f, off_f + 1)), seg.id, off_f, 1,
                                    _LABELS[seg.id][2], sequence=seq)
                if offset is not None:
                    res = dataclasses.replace(res, start=start + offset)
        result.append(res)
    return result


_field_of = _field


def _span(end: datetime | None, start: datetime | None, notes: Notes, label: str,
          loc: Location) -> timedelta | None:
    if end is None or start is None:
        return None
    if end < start:
        notes.add(102, f"{label} is before the start; ignored", loc)
        return None
    if end - start > _LONGEST:
        notes.add(102, f"{label} is more than a day after the start; ignored", loc)
        return None
    return end - start


def _duration(s: list[str], sch11: list[str], tq1: list[str] | None, start: datetime | None,
              resources: list[Resource], r: Reader) -> timedelta | None:
    """TQ1-8/TQ1-6 → SCH-11.5/SCH-11.3 → SCH-9+10 → the first resource duration (first match wins)."""
    leaf, notes = r.leaf, r.notes
    sch_units = leaf(s[10])
    if tq1 is not None:
        end = r.ts(leaf(tq1[8]), "TQ1", 8, 1, "appointment end", fatal=True)
        found = _span(end, start, notes, "appointment end", Location("TQ1", 1, 8)) if end else None
        if found is None:
            tq6 = _pad(r.comps(tq1[6]), 2)
            found = r.duration(tq6[0], tq6[1], "TQ1", 6, 1, "appointment duration", fatal=True)
        if found is not None:
            return found
    end = r.ts(sch11[4], "SCH", 11, 5, "appointment end", fatal=True)
    found = (_span(end, start, notes, "appointment end", Location("SCH", 1, 11, 1, 5))
             if end else None)
    if found is None:
        found = r.duration(sch11[2], sch_units, "SCH", 11, 3, "appointment duration", fatal=True)
    if found is None:
        found = r.duration(leaf(s[9]), sch_units, "SCH", 9, 1, "appointment duration", fatal=True)
    if found is not None:
        return found
    for kind in ("service", "location", "personnel", "general"):
        for res in resources:
            if res.kind == kind and res.duration is not None:
                return res.duration
    return None


# -- ORM / OMI ----------------------------------------------------------------------------------
def _orders(message: Message, tz: tzinfo, notes: Notes) -> OrderEvent:
    orcs = message.all("ORC")
    if not orcs:
        raise Reject(100, f"{message.message_code} message without ORC segment", "ORC",
                     user_text="The order message has no ORC segment.")
    r = Reader(message, tz, notes)
    ids = message.segment_ids
    ends = [orc.index for orc in orcs[1:]] + [len(ids)]
    orders = []
    for seq, (orc, end) in enumerate(zip(orcs, ends, strict=True), 1):
        group: dict[str, Segment | None] = {"OBR": None, "TQ1": None, "IPC": None}
        for i in range(orc.index + 1, end):
            sid = ids[i]
            if sid in group and group[sid] is None:
                group[sid] = message.at(i)
        orders.append(_order(orc, seq, group["OBR"], group["TQ1"], group["IPC"], r))
    return OrderEvent(patient=patient_from(message, notes, reader=r), orders=tuple(orders),
                      event_time=_event_time(message, r), warnings=notes.texts)


def _order(orc_seg: Segment, seq: int, obr_seg: Segment | None, tq1_seg: Segment | None,
           ipc_seg: Segment | None, r: Reader) -> Order:
    leaf = r.leaf
    orc = orc_seg.fields
    obr = obr_seg.fields if obr_seg is not None else []
    ipc = ipc_seg.fields if ipc_seg is not None else []
    tq1 = tq1_seg.fields if tq1_seg is not None else None
    orc7 = r.comps(_field(orc, 7))
    obr27 = r.comps(_field(obr, 27))
    obr4 = r.comps(_field(obr, 4))

    def first_time(*sources: tuple[str, str, int, int, str]) -> datetime | None:
        for seg_id, value, field, comp, label in sources:
            if value.strip():
                found = r.ts(value, seg_id, field, comp, label, sequence=seq)
                if found is not None:
                    return found
        return None

    return Order(
        control=leaf(_field(orc, 1)).strip(),
        placer_order_number=ident(leaf(_field(orc, 2))) or ident(leaf(_field(obr, 2))),
        filler_order_number=ident(leaf(_field(orc, 3))) or ident(leaf(_field(obr, 3))),
        status=text(leaf(_field(orc, 5))),
        procedure_code=text(nth(obr4, 1)),
        procedure_text=text(nth(obr4, 2)),
        coding_system=text(nth(obr4, 3)),
        modality=text(leaf(_field(ipc, 5)) or leaf(_field(obr, 24))),
        accession=text(leaf(_field(ipc, 1)) or leaf(_field(obr, 18))),
        priority=priority(leaf(_field(tq1, 9)) if tq1 else "", nth(obr27, 6), nth(orc7, 6),
                          leaf(_field(obr, 5))),
        requested_at=first_time(("OBR", leaf(_field(obr, 7)), 7, 1, "OBR-7 observation time"),
                                ("OBR", leaf(_field(obr, 36)), 36, 1, "OBR-36 scheduled time"),
                                ("TQ1", leaf(_field(tq1, 7)) if tq1 else "", 7, 1, "TQ1-7 start"),
                                ("OBR", nth(obr27, 4), 27, 4, "OBR-27 start"),
                                ("ORC", nth(orc7, 4), 7, 4, "ORC-7 start")),
        ordering_provider=_name(r.comps(_field(orc, 12)))
        or (_name(r.comps(_field(obr, 16))) if obr_seg is not None else ""),
        reason=(_coded_text(r, _field(obr, 31)) or text(leaf(_field(obr, 13))))
        if obr_seg is not None else "",
        transaction_time=first_time(("ORC", leaf(_field(orc, 9)), 9, 1, "ORC-9 transaction time")),
    )


def _event_time(message: Message, r: Reader) -> datetime | None:
    return r.ts(r.leaf(message.at(0).field(7)), "MSH", 7, 1, "message time")
