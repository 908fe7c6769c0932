"""Every public sample parses (SIU/ORM/OMI also extract) or is refused with a Reject and a sensible code."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from radsched_engine.domain.extract import event_for
from radsched_engine.domain.model import AppointmentEvent, OrderEvent
from radsched_engine.errors import Reject
from radsched_engine.exchange import Exchange
from radsched_engine.hl7.message import Message

from .helpers import SAMPLES, build, exchange, messages_of, sample_files

TZ = ZoneInfo("Europe/London")
# Files whose (first) refusal is expected, with the HL7 error code, on a scheduling channel.
REFUSED = {
    "orm_o01_epic_lf_broken_field_1.hl7": 100,           # line break inside OBR-17
    "siu_s12_dcm4che_broken_segment_join_1.hl7": 100,    # RGS glued onto PV1
    "oru_r01_hapi_npac_rad_joined_segments_1.hl7": 100,  # OBX glued onto OBR (also not accepted)
    "siu_s12_dcm4che_1.hl7": 100,                        # no SCH
    "siu_s12_gmed_no_sch_1.hl7": 100,                    # no SCH
    "siu_s12_nodehl7_epic_1.hl7": 202,                   # truncated MSH: no MSH-11/12
}
SCHEDULING = ("siu_", "orm_", "omi_", "multi_message_siu", "batch_fhs_bhs_orm")


def names() -> list[str]:
    return sorted(p.name for p in SAMPLES.glob("*.hl7")) if SAMPLES.is_dir() else ["(corpus absent)"]


def touch_everything(message: Message) -> None:
    """Read every field, repetition and component: unescaping must never fail."""
    for seg in message.segments:
        for n in range(1, len(seg) + 1):
            for rep in range(1, len(seg.repetitions(n)) + 1):
                for comp in range(1, 4):
                    assert isinstance(seg.get(n, comp, 1, rep), str)
                    assert isinstance(seg.get(n, comp, 2, rep), str)


async def outcome(stages: list, raw: bytes) -> tuple[Exchange, int | None]:
    ex = exchange(raw)
    try:
        for stage in stages:
            await stage(ex)
        event = event_for(ex, TZ)
        if ex.message is not None and ex.message.message_code in ("SIU", "ORM", "OMI"):
            assert isinstance(event, AppointmentEvent | OrderEvent)
    except Reject as exc:
        return ex, exc.code
    return ex, None


@pytest.mark.parametrize("name", names())
async def test_sample(name: str) -> None:
    files = {p.name: p for p in sample_files()}
    path: Path = files[name]
    stages = build("  - parse\n  - validate\n")
    codes = []
    for raw in messages_of(path):
        try:
            touch_everything(Message.parse(raw))
        except Reject as exc:
            assert exc.code == 100
        ex, code = await outcome(stages, raw)
        codes.append(code)
        if code is None:
            assert ex.message is not None and ex.message.control_id
    expected = REFUSED.get(name)
    if expected is None:
        expected = None if name.startswith(SCHEDULING) else 200
    assert codes[0] == expected, (name, codes)
    assert all(code == codes[0] for code in codes), (name, codes)


async def test_every_sample_extracts_with_a_lenient_channel() -> None:
    """With every type accepted and lenient options, each message is extracted or refused clearly."""
    stages = build('  - parse: {broken_segments: rejoin}\n  - validate: {default_version: "2.3", '
                   "default_processing_id: P}\n", accept="[SIU^S12, SIU^S13, SIU^S14, SIU^S15, "
                   "SIU^S17, SIU^S26, ORM^O01, OMI^O23, ADT^A01, ADT^A04, ADT^A08, ADT^A40, ORU^R01, "
                   "ORU^R03, BAR^P01, VXU^V04]")
    seen = 0
    for path in sample_files():
        for raw in messages_of(path):
            _, code = await outcome(stages, raw)
            seen += 1
            assert code in (None, 100), (path.name, code)   # only glued lines or a missing SCH remain
    assert seen >= 63


def test_known_extractions() -> None:
    """Spot checks on real samples (values are the published test data)."""
    from .helpers import sample

    def event(name: str) -> AppointmentEvent | OrderEvent | None:
        ex = exchange(sample(name))
        ex.message = Message.parse(ex.raw)
        return event_for(ex, TZ)

    ev = event("siu_s14_hapi_orsos_1.hl7")
    assert isinstance(ev, AppointmentEvent)
    assert (ev.placer_id, ev.filler_id, ev.trigger) == ("ADS", "569576", "S14")
    assert ev.duration is not None and ev.duration.total_seconds() == 379 * 60
    assert len(ev.services) == 4 and len(ev.locations) == 4 and len(ev.personnel) == 4
    ev = event("siu_s12_pkb_1.hl7")                  # PID before SCH, no RGS
    assert isinstance(ev, AppointmentEvent) and ev.key == "P:ID123"
    assert ev.patient is not None and ev.patient.authority == "NHS"
    ev = event("siu_s12_athena_fs_trailer_1.hl7")    # stray 0x1C, v2.2, "10|minutes"
    assert isinstance(ev, AppointmentEvent) and ev.duration is not None
    assert ev.duration.total_seconds() == 600
    ev = event("omi_o23_dcm4che_1.hl7")
    assert isinstance(ev, OrderEvent) and ev.orders and ev.orders[0].control == "NW"
    ev = event("orm_o01_oie_crlf_1.hl7")             # "Aug 15, 1942" birth date: a warning only
    assert isinstance(ev, OrderEvent) and ev.patient is not None and ev.patient.birth_date is None
    assert any("birth date" in w for w in ev.warnings)
