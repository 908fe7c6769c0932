"""SIU and ORM/OMI messages to the domain's events, following the notes' identity and timing policies."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, tzinfo

from ..errors import Location, Reject
from ..exchange import Exchange
from ..hl7.message import Message
from .model import AppointmentEvent, OrderEvent, Resource
from .orders import orders_of
from .patient import patient_from
from .read import Reader, name, pad
from .values import Notes, ident, priority, text

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
        event = orders_of(message, tz, notes)
    exchange.warnings.extend(notes.problems)
    exchange.data["event"] = event
    return event


def appointment_from(message: Message, tz: tzinfo) -> AppointmentEvent:
    """The appointment event of an SIU message; AE 100 without SCH, 101 without ids, 102 bad start."""
    return _appointment(message, tz, Notes())


def order_event_from(message: Message, tz: tzinfo) -> OrderEvent:
    """The orders of an ORM^O01 / OMI^O23 message (one per ORC); AE 100 without ORC."""
    return orders_of(message, tz, Notes())


# -- SIU ----------------------------------------------------------------------------------------
# Where a resource was read: segment id, its fields, start field, sequence among its segment id.
_Origin = tuple[str, list[str], int, int]


def _first(message: Message, seg_id: str, n: int) -> list[str] | None:
    """The raw fields of the first ``seg_id`` segment, padded to ``n``; None when there is none."""
    rows = message.split_fields(seg_id)
    return pad(rows[0], n) if rows else None


def _appointment(message: Message, tz: tzinfo, notes: Notes) -> AppointmentEvent:
    s = _first(message, "SCH", 28)
    if s is None:
        raise Reject(100, "SIU message without SCH segment", "SCH",
                     user_text="The message has no SCH (schedule) segment.")
    r = Reader(message, tz, notes)
    leaf = r.leaf
    placer, filler = ident(leaf(s[1])), ident(leaf(s[2]))
    if placer is None and filler is None:
        raise Reject(101, "appointment id missing: neither SCH-1 (placer) nor SCH-2 (filler) is "
                          "valued", Location("SCH", 1, 2, 1, 1),
                     user_text="The appointment has no placer or filler id.")
    tq1 = _first(message, "TQ1", 10)
    sch11 = pad(r.comps(s[11]), 6)
    start = None
    if tq1 is not None:
        start = r.ts(leaf(tq1[7]), "TQ1", 7, 1, "appointment start", fatal=True)
    if start is None:
        start = r.ts(sch11[3], "SCH", 11, 4, "appointment start", fatal=True)
    found = _resources(message, r)
    if start is None:
        start = _start_from_resources(found, r)
    if start is not None:
        _apply_offsets(message, found, start, r)
    length = _duration(s, sch11, tq1, start, found, r)
    pv1 = message.split_fields("PV1")
    kinds: dict[str, list[Resource]] = {"service": [], "location": [], "personnel": [], "general": []}
    for res, _origin in found:
        kinds[res.kind].append(res)
    return AppointmentEvent(
        trigger=message.trigger,
        placer_id=placer,
        filler_id=filler,
        start=start,
        duration=length,
        patient=patient_from(message, notes, reader=r),
        status_raw=text(leaf(s[25])),
        priority=priority(leaf(tq1[9]) if tq1 is not None else "", sch11[5]),
        reason=r.coded_text(s[7]) or r.coded_text(s[6]),
        notes=_notes_after(message, r) if message.has("NTE") else "",
        referring_physician=(name(r.comps(pad(pv1[0], 9)[8])) if pv1 and len(pv1[0]) > 1 else "")
        or name(r.comps(s[12])),
        placer_order_numbers=_ids(r, s[26]) if s[26] else (),
        filler_order_numbers=_ids(r, s[27]) if s[27] else (),
        services=tuple(kinds["service"]),
        locations=tuple(kinds["location"]),
        personnel=tuple(kinds["personnel"]),
        general=tuple(kinds["general"]),
        event_time=r.ts(leaf(message.values("MSH", 7)[0]), "MSH", 7, 1, "message time"),
        warnings=notes.texts,
    )


def _ids(r: Reader, value: str) -> tuple[str, ...]:
    found = []
    for rep in r.reps(value):
        v = ident(r.leaf(rep))
        if v:
            found.append(v)
    return tuple(found)


def _notes_after(message: Message, r: Reader) -> str:
    """NTE text that directly follows SCH (or its TQ1): the appointment's notes."""
    lines: list[str] = []
    ids = message.segment_ids
    after = ids.index("SCH") + 1
    rows = message.split_fields("NTE")
    k = ids[:after].count("NTE")            # NTE segments before SCH
    for sid in ids[after:]:
        if sid == "TQ1":
            continue
        if sid != "NTE":
            break
        nte = rows[k]
        k += 1
        lines.extend(r.leaf(rep) for rep in r.reps(nte[3] if len(nte) > 3 else ""))
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
        return text(f3[0]), name(f3) if f3[1].strip() else "", ""
    return text(f3[0]), text(f3[1]), text(f3[2])


# Per segment id: labels of its start, duration and start offset (in warnings and errors).
_LABELS = {seg_id: (f"{seg_id} start", f"{seg_id} duration", f"{seg_id} start offset")
           for _k, seg_id, _s, _o, _d in _RESOURCES}
_OFFSET_FIELD = {seg_id: off for _k, seg_id, _s, off, _d in _RESOURCES}


def _resources(message: Message, r: Reader) -> list[tuple[Resource, _Origin]]:
    """Resources from AIS, then AIL, AIP and AIG (each in message order), with where they were read."""
    found: list[tuple[Resource, _Origin]] = []
    leaf, comps, ts, duration = r.leaf, r.comps, r.ts, r.duration
    for kind, seg_id, start_f, _offset_f, dur_f in _RESOURCES:
        rows = message.split_fields(seg_id)
        if not rows:
            continue
        start_label, dur_label, _ = _LABELS[seg_id]
        for seq, fields in enumerate(rows, 1):
            f = pad(fields, dur_f + 2)
            rid, label, system = _resource_text(kind, pad(comps(f[3]), 9))
            if not rid and not label:
                continue
            role = "" if kind == "service" else (leaf(f[4]).strip() or leaf(f[4], 2).strip())
            found.append((Resource(     # kind, code, text, coding_system, role, action, start, duration
                kind, rid, label, system, role, leaf(f[2]).strip().upper(),
                ts(leaf(f[start_f]), seg_id, start_f, 1, start_label, sequence=seq),
                duration(leaf(f[dur_f]), leaf(f[dur_f + 1]), seg_id, dur_f, 1, dur_label, sequence=seq),
            ), (seg_id, f, start_f, seq)))
    return found


def _start_from_resources(found: list[tuple[Resource, _Origin]], r: Reader) -> datetime | None:
    """Cascade AIS-4 → AIL-6 → AIP-6 → AIG-8; the one used must be well-formed (else AE 102)."""
    for _res, (seg_id, f, field, seq) in found:      # (in that order already)
        value = r.leaf(f[field])
        if value.strip():
            return r.ts(value, seg_id, field, 1, "appointment start", fatal=True, sequence=seq)
    return None


def _apply_offsets(message: Message, found: list[tuple[Resource, _Origin]], start: datetime,
                   r: Reader) -> None:
    """A resource without its own start but with a start offset (AIS-5/6 ...) starts relative to
    ``start`` (in message order, for the order of warnings)."""
    todo = [i for i, (res, (seg_id, f, _s, _q)) in enumerate(found)
            if res.start is None and r.leaf(f[_OFFSET_FIELD[seg_id]]).strip()]
    if len(todo) > 1:
        ids = message.segment_ids
        where = {sid: [i for i, x in enumerate(ids) if x == sid] for sid in _OFFSET_FIELD}
        todo.sort(key=lambda i: where[found[i][1][0]][found[i][1][3] - 1])
    for i in todo:
        res, origin = found[i]
        seg_id, f, _s, seq = origin
        off_f = _OFFSET_FIELD[seg_id]
        offset = r.duration(r.leaf(f[off_f]), r.leaf(f[off_f + 1]), seg_id, off_f, 1,
                            _LABELS[seg_id][2], sequence=seq)
        if offset is not None:
            found[i] = (dataclasses.replace(res, start=start + offset), origin)


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
              found: list[tuple[Resource, _Origin]], r: Reader) -> timedelta | None:
    """TQ1-8/TQ1-6 → SCH-11.5/SCH-11.3 → SCH-9+10 → the first resource duration (first match wins)."""
    leaf, notes = r.leaf, r.notes
    sch_units = leaf(s[10])
    if tq1 is not None:
        end = r.ts(leaf(tq1[8]), "TQ1", 8, 1, "appointment end", fatal=True)
        span = _span(end, start, notes, "appointment end", Location("TQ1", 1, 8)) if end else None
        if span is None:
            tq6 = pad(r.comps(tq1[6]), 2)
            span = r.duration(tq6[0], tq6[1], "TQ1", 6, 1, "appointment duration", fatal=True)
        if span is not None:
            return span
    end = r.ts(sch11[4], "SCH", 11, 5, "appointment end", fatal=True)
    span = (_span(end, start, notes, "appointment end", Location("SCH", 1, 11, 1, 5))
            if end else None)
    if span is None:
        span = r.duration(sch11[2], sch_units, "SCH", 11, 3, "appointment duration", fatal=True)
    if span is None:
        span = r.duration(leaf(s[9]), sch_units, "SCH", 9, 1, "appointment duration", fatal=True)
    if span is not None:
        return span
    for res, _origin in found:                      # (kind by kind already)
        if res.duration is not None:
            return res.duration
    return None
