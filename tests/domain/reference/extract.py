"""SIU and ORM/OMI messages to the domain's events, following the notes' identity and timing policies."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, tzinfo

from radsched_engine.domain.model import AppointmentEvent, Order, OrderEvent, Resource
from radsched_engine.errors import Location, Reject
from radsched_engine.exchange import Exchange
from radsched_engine.hl7.message import Message, Segment

from .patient import patient_from
from .values import (
    Notes,
    coded_text,
    components,
    duration,
    ident,
    nth,
    person_name,
    priority,
    text,
    timestamp,
)

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
def _appointment(message: Message, tz: tzinfo, notes: Notes) -> AppointmentEvent:
    sch = message.segment("SCH")
    if sch is None:
        raise Reject(100, "SIU message without SCH segment", "SCH",
                     user_text="The message has no SCH (schedule) segment.")
    placer, filler = ident(sch.get(1)), ident(sch.get(2))
    if placer is None and filler is None:
        raise Reject(101, "appointment id missing: neither SCH-1 (placer) nor SCH-2 (filler) is "
                          "valued", Location("SCH", 1, 2, 1, 1),
                     user_text="The appointment has no placer or filler id.")
    tq1 = message.segment("TQ1")
    start = None
    if tq1 is not None:
        start = timestamp(tq1, 7, 1, tz, notes, "appointment start", fatal=True)
    if start is None:
        start = timestamp(sch, 11, 4, tz, notes, "appointment start", fatal=True)
    resources, raw_starts = _resources(message, tz, notes)
    if start is None:
        start = _start_from_resources(raw_starts, tz, notes)
    if start is not None:
        resources = _apply_offsets(resources, raw_starts, start, notes)
    length = _duration(sch, tq1, start, resources, tz, notes)
    pv1 = message.segment("PV1")
    return AppointmentEvent(
        trigger=message.trigger,
        placer_id=placer,
        filler_id=filler,
        start=start,
        duration=length,
        patient=patient_from(message, notes),
        status_raw=text(sch.get(25)),
        priority=priority(tq1.get(9) if tq1 else "", sch.get(11, 6)),
        reason=coded_text(sch, 7) or coded_text(sch, 6),
        notes=_notes_after(message, sch),
        referring_physician=(person_name(pv1, 8) if pv1 else "") or person_name(sch, 12),
        placer_order_numbers=_ids(sch, 26),
        filler_order_numbers=_ids(sch, 27),
        services=tuple(r for r in resources if r.kind == "service"),
        locations=tuple(r for r in resources if r.kind == "location"),
        personnel=tuple(r for r in resources if r.kind == "personnel"),
        general=tuple(r for r in resources if r.kind == "general"),
        event_time=_event_time(message, tz, notes),
        warnings=notes.texts,
    )


def _ids(seg: Segment, field: int) -> tuple[str, ...]:
    values = (ident(seg.get(field, 1, 1, rep)) for rep in range(1, len(seg.repetitions(field)) + 1))
    return tuple(v for v in values if v)


def _notes_after(message: Message, sch: Segment) -> str:
    """NTE text that directly follows SCH (or its TQ1): the appointment's notes."""
    lines: list[str] = []
    for i in range(sch.index + 1, len(message)):
        seg = message.at(i)
        if seg.id == "TQ1":
            continue
        if seg.id != "NTE":
            break
        lines.extend(seg.get(3, 1, 1, rep) for rep in range(1, len(seg.repetitions(3)) + 1))
    return "\n".join(line.strip() for line in lines if line.strip() and line.strip() != '""')


def _resource_text(kind: str, seg: Segment) -> tuple[str, str, str]:
    """``(code, text, coding system)`` of a resource segment's field 3."""
    f3 = components(seg, 3)
    if kind == "location":
        point, room = nth(f3, 1).strip(), nth(f3, 2).strip()
        rid = point or room
        described = nth(f3, 9).strip()
        extra = [described] if described else [room if point else "", nth(f3, 4).strip()]
        return text(rid), " ".join(e for e in extra if e and e != rid), ""
    if kind == "personnel":
        return text(nth(f3, 1)), person_name(seg, 3) if nth(f3, 2).strip() else "", ""
    return text(nth(f3, 1)), text(nth(f3, 2)), text(nth(f3, 3))


def _resources(message: Message, tz: tzinfo,
               notes: Notes) -> tuple[list[Resource], list[tuple[Segment, int, int]]]:
    """Resources from AIS/AIL/AIP/AIG in message order, plus where each one's start was sent."""
    found: list[tuple[int, Resource, tuple[Segment, int, int]]] = []
    for kind, seg_id, start_f, _offset_f, dur_f in _RESOURCES:
        for seq, seg in enumerate(message.all(seg_id), 1):
            rid, label, system = _resource_text(kind, seg)
            if not rid and not label:
                continue
            role = "" if kind == "service" else (seg.get(4).strip() or seg.get(4, 2).strip())
            found.append((seg.index, Resource(
                kind=kind, code=rid, text=label, coding_system=system, role=role,
                action=seg.get(2).strip().upper(),
                start=timestamp(seg, start_f, 1, tz, notes, f"{seg_id} start", sequence=seq),
                duration=duration(seg, dur_f, 1, seg.get(dur_f + 1), notes, f"{seg_id} duration",
                                  sequence=seq),
            ), (seg, start_f, seq)))
    found.sort(key=lambda item: item[0])
    return [r for _, r, _ in found], [w for _, _, w in found]


def _start_from_resources(raw_starts: list[tuple[Segment, int, int]], tz: tzinfo,
                          notes: Notes) -> datetime | None:
    """Cascade AIS-4 → AIL-6 → AIP-6 → AIG-8; the one used must be well-formed (else AE 102)."""
    for seg_id in ("AIS", "AIL", "AIP", "AIG"):
        for seg, field, seq in raw_starts:
            if seg.id == seg_id and seg.get(field).strip():
                return timestamp(seg, field, 1, tz, notes, "appointment start", fatal=True, sequence=seq)
    return None


def _apply_offsets(resources: list[Resource], raw_starts: list[tuple[Segment, int, int]],
                   start: datetime, notes: Notes) -> list[Resource]:
    """A resource without its own start but with a start offset (AIS-5/6 ...) starts relative to ``start``."""
    offsets = {kind: off for kind, _sid, _s, off, _d in _RESOURCES}
    result = []
    for res, (seg, _field, seq) in zip(resources, raw_starts, strict=True):
        off_f = offsets[res.kind]
        if res.start is None and seg.get(off_f).strip():
            offset = duration(seg, off_f, 1, seg.get(off_f + 1), notes, f"{seg.id} start offset",
                              sequence=seq)
            if offset is not None:
                res = dataclasses.replace(res, start=start + offset)
        result.append(res)
    return result


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


def _duration(sch: Segment, tq1: Segment | None, start: datetime | None, resources: list[Resource],
              tz: tzinfo, notes: Notes) -> timedelta | None:
    """TQ1-8/TQ1-6 → SCH-11.5/SCH-11.3 → SCH-9+10 → the first resource duration (first match wins)."""
    sch_units = sch.get(10)
    if tq1 is not None:
        end = timestamp(tq1, 8, 1, tz, notes, "appointment end", fatal=True)
        found = _span(end, start, notes, "appointment end", Location("TQ1", 1, 8))
        if found is None:
            found = duration(tq1, 6, 1, tq1.get(6, 2), notes, "appointment duration", fatal=True)
        if found is not None:
            return found
    end = timestamp(sch, 11, 5, tz, notes, "appointment end", fatal=True)
    found = _span(end, start, notes, "appointment end", Location("SCH", 1, 11, 1, 5))
    if found is None:
        found = duration(sch, 11, 3, sch_units, notes, "appointment duration", fatal=True)
    if found is None:
        found = duration(sch, 9, 1, sch_units, notes, "appointment duration", fatal=True)
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
    ends = [orc.index for orc in orcs[1:]] + [len(message)]
    orders = []
    for seq, (orc, end) in enumerate(zip(orcs, ends, strict=True), 1):
        group = {"OBR": None, "TQ1": None, "IPC": None}
        for i in range(orc.index + 1, end):
            seg = message.at(i)
            if seg.id in group and group[seg.id] is None:
                group[seg.id] = seg
        orders.append(_order(orc, seq, group["OBR"], group["TQ1"], group["IPC"], tz, notes))
    return OrderEvent(patient=patient_from(message, notes), orders=tuple(orders),
                      event_time=_event_time(message, tz, notes), warnings=notes.texts)


def _order(orc: Segment, seq: int, obr: Segment | None, tq1: Segment | None, ipc: Segment | None,
           tz: tzinfo, notes: Notes) -> Order:
    def first_time(*sources: tuple[Segment | None, int, int, str]) -> datetime | None:
        for seg, field, comp, label in sources:
            if seg is not None and seg.get(field, comp).strip():
                value = timestamp(seg, field, comp, tz, notes, label, sequence=seq)
                if value is not None:
                    return value
        return None

    obr_get = obr.get if obr is not None else (lambda *_a: "")
    return Order(
        control=orc.get(1).strip(),
        placer_order_number=ident(orc.get(2)) or ident(obr_get(2)),
        filler_order_number=ident(orc.get(3)) or ident(obr_get(3)),
        status=text(orc.get(5)),
        procedure_code=text(obr_get(4, 1)),
        procedure_text=text(obr_get(4, 2)),
        coding_system=text(obr_get(4, 3)),
        modality=text((ipc.get(5) if ipc is not None else "") or obr_get(24)),
        accession=text((ipc.get(1) if ipc is not None else "") or obr_get(18)),
        priority=priority(tq1.get(9) if tq1 else "", obr_get(27, 6), orc.get(7, 6), obr_get(5)),
        requested_at=first_time((obr, 7, 1, "OBR-7 observation time"),
                                (obr, 36, 1, "OBR-36 scheduled time"), (tq1, 7, 1, "TQ1-7 start"),
                                (obr, 27, 4, "OBR-27 start"), (orc, 7, 4, "ORC-7 start")),
        ordering_provider=person_name(orc, 12) or (person_name(obr, 16) if obr is not None else ""),
        reason=(coded_text(obr, 31) or text(obr.get(13))) if obr is not None else "",
        transaction_time=first_time((orc, 9, 1, "ORC-9 transaction time")),
    )


def _event_time(message: Message, tz: tzinfo, notes: Notes) -> datetime | None:
    msh = message.at(0)
    return timestamp(msh, 7, 1, tz, notes, "message time")


