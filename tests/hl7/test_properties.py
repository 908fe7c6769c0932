"""Property tests: whatever the bytes, parsing (and parse/validate/extract) returns or raises ``Reject``."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from radsched_engine.domain.extract import event_for
from radsched_engine.errors import Reject
from radsched_engine.hl7.message import Message

from .helpers import SAMPLES, build, run_sync

TZ = ZoneInfo("America/Chicago")
STAGES = build("  - parse\n  - validate\n", accept="[SIU^S12, SIU^S14, ORM^O01, OMI^O23, ADT^A01]")
LENIENT = build('  - parse: {broken_segments: rejoin, control_characters: keep}\n  - validate: '
                '{default_version: "2.5", default_processing_id: P, required: {SIU: [], ORM: [], '
                "OMI: []}, timestamps: []}\n", accept="[SIU^S12, SIU^S14, ORM^O01, OMI^O23]")
CORPUS = sorted(p.read_bytes() for p in SAMPLES.glob("*.hl7")) if SAMPLES.is_dir() else []
HEADERS = [b"MSH|^~\\&|A|B|C|D|20250101||SIU^S12|1|P|2.5", b"MSH|^~\\&|A|B|C|D|20250101||ORM^O01|1|P|2.3",
           b"MSH#!@%*#A#B#C#D#20250101##SIU!S12#1#P#2.5", b"MSH|^\\&|A||B||2025||SIU^S14|1|P|2.4"]
# Text made of the characters that matter to the grammar.
WIRE = st.text(alphabet=st.sampled_from(list("|^~\\&#!@%*\"\r\n \x0b\x1c\x00XFSTREP.br0123456789"
                                             "ACDGHILMNOPRSTZ+-é")), max_size=300)
SEGMENT = st.sampled_from(["SCH", "PID", "TQ1", "AIS", "AIG", "AIL", "AIP", "RGS", "NTE", "ORC", "OBR",
                           "IPC", "PV1", "ZZZ", "XYZ"])


def exercise(raw: bytes) -> None:
    """Parse, read everything, and run both pipelines plus extraction; only ``Reject`` may escape."""
    try:
        message = Message.parse(raw)
    except Reject as exc:
        assert exc.code == 100
        return
    for seg in message.segments:
        for n in range(1, min(len(seg), 40) + 1):
            for comp in (1, 2, 4):
                assert isinstance(seg.get(n, comp, 1, 1), str)
                assert isinstance(seg.get(n, comp, 2, 2), str)
            assert isinstance(seg.raw(n, 2, 1, 2), str)
    for stages in (STAGES, LENIENT):
        try:
            ex = run_sync(stages, raw)
            event_for(ex, TZ)
        except Reject as exc:
            assert 100 <= exc.code <= 207


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_arbitrary_bytes(raw: bytes) -> None:
    exercise(raw)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(HEADERS), st.lists(st.tuples(SEGMENT, WIRE), max_size=12))
def test_grammar_shaped_messages(header: bytes, segments: list[tuple[str, str]]) -> None:
    fs = header[3:4].decode()
    body = "".join(f"\r{sid}{fs}{text}" for sid, text in segments)
    exercise(header + body.encode("utf-8"))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_samples(data: st.DataObject) -> None:
    if not CORPUS:
        raw = HEADERS[0] + b"\rSCH|1|2|||||||30|min|^^^20250101\rPID|1||42\rAIS|1|A|CT|20250101\r"
    else:
        raw = data.draw(st.sampled_from(CORPUS))
    buf = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 8))):
        if not buf:
            break
        pos = data.draw(st.integers(0, len(buf) - 1))
        kind = data.draw(st.sampled_from(["replace", "insert", "delete", "delimiter"]))
        if kind == "replace":
            buf[pos] = data.draw(st.integers(0, 255))
        elif kind == "insert":
            buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del buf[pos:pos + data.draw(st.integers(1, 16))]
        else:
            buf[pos] = data.draw(st.sampled_from(list(b"|^~\\&\r\n\"")))
    exercise(bytes(buf))


def test_every_sample_byte_deleted_one_at_a_time_in_the_msh() -> None:
    """The MSH is where the delimiters live: deleting any one of its bytes must not break parsing."""
    for raw in CORPUS[:20]:
        end = raw.find(b"\r") if raw.find(b"\r") > 0 else min(len(raw), 200)
        for i in range(min(end, 120)):
            exercise(raw[:i] + raw[i + 1:])
