"""The fast extraction and mapping produce exactly what the reference (the code before it) produced.

Three checks: golden outputs of the project's own messages (full text, ``golden_extract.json``),
golden digests of the shared public corpus (``golden_extract_shared.json``: no sample content is
stored), and a live comparison with the reference implementation (``tests/domain/reference``, the
code as it was before the fast path) over the corpus and over hypothesis-mutated messages.
Rewrite the golden files with ``python -m tests.domain.golden`` only when a change of output is
intended.
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from . import golden
from .reference import extract as ref_extract
from .reference import mapping as ref_mapping

OWN = golden.own_messages()


def _reference(raw: bytes, tz: object) -> str:
    return golden.canonical(raw, tz, domain=ref_extract, maps=ref_mapping)  # type: ignore[arg-type]


def test_golden_own_messages() -> None:
    expected = json.loads(golden.GOLDEN.read_text())
    got = golden.outputs(OWN)
    assert sorted(got) == sorted(expected)
    for key in expected:
        assert got[key] == expected[key], key


def test_golden_shared_corpus() -> None:
    messages = golden.shared_messages()
    if not messages:
        pytest.skip(f"public HL7 sample corpus not found at {golden.SAMPLES} (it lives next to the repo)")
    expected = json.loads(golden.GOLDEN_SHARED.read_text())
    got = golden.outputs(messages, golden.digest)
    assert sorted(got) == sorted(expected)
    for key in expected:
        if got[key] != expected[key]:       # show the new output, then compare with the reference
            name, _, zone = key.partition("|")
            tz = next(z for z in golden.ZONES if golden._zone(z) == zone)
            assert golden.canonical(messages[name], tz) == _reference(messages[name], tz), key


def test_reference_agrees_on_every_message() -> None:
    messages = OWN | golden.shared_messages()
    for name, raw in messages.items():
        for tz in golden.ZONES:
            assert golden.canonical(raw, tz) == _reference(raw, tz), name


# -- mutated messages ------------------------------------------------------------------------------
_VALUES = [
    "", '""', " ", "  x  ", "A", "a~b", "~B", "^B", "A^B^C~D^E", "&s^x", "x&y&z^p&q", "\\S\\",
    "A\\S\\B^C", "\\X41\\^\\T\\", "X\\T\\Y", "\\E\\\\F\\", "\\.br\\", "\\H\\bold\\N\\",
    "20261215", "202612150900", "2026121509", "20261215090000", "20261215090000-0500",
    "20261215090000.1234-0500", " 20261215090000 ", "20261215090000+1500", "20261215090000+0530",
    "20261315", "20260230090000", "2026-12-15", "20261215T090000", "202612150960", "2026",
    "20261215093000+0000", "20261216090000", "19800415", "20261215090000.5",
    "30", "M30", "H1", "1.5", "-3", "INDEF", "0", "999999999", "15 ", "S3600",
    "min", "MIN", "m", "h", "Hours", "xyz", "s.", "^^30^20261215090000^^S",
    "^^^20261215090000-0500^20261215094500-0500^A", "1234^WELBY^MARCUS^^^DR",
    "^^^^^^^^", "CT1^^^H^^^M^1^CT Scanner 1", "^Room 4^^H", "CT^CT scanner", "MR^^L",
    "^PRN^CP^^1^413^5550199", "(555)123-4567^WPN", "^NET^Internet^x@y", "^^^^+44^(20)^7946-0000^12",
    '""^PRN', "MRN1^^^H^MR~ALT^^^X^PI", "^^^H^MR~X2^^^Y^MR", "STAT", "asap", "TS60", "Booked",
    "Noshow^No show", "SCH", "A", "U", "d", "NW", "CA", "SC",
]
_IDS = ["MSH", "SCH", "TQ1", "NTE", "PID", "PV1", "RGS", "AIS", "AIG", "AIL", "AIP", "ORC", "OBR",
        "IPC", "ZXX"]


def _segments(raw: bytes) -> tuple[str, list[str]]:
    text = raw.decode("latin-1")
    lines = [s for s in re.split(r"\r\n|\r|\n", text) if s]
    return lines[0], lines[1:]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    base = draw(st.sampled_from(sorted(OWN)))
    msh, body = _segments(OWN[base])
    fs = msh[3]
    for _ in range(draw(st.integers(0, 6))):
        what = draw(st.sampled_from(["set", "set", "set", "drop", "dup", "add", "msh7"]))
        if what == "msh7":
            fields = msh.split(fs)
            if len(fields) > 6:
                fields[6] = draw(st.sampled_from(_VALUES))
                msh = fs.join(fields)
            continue
        if what == "add" or not body:
            seg_id = draw(st.sampled_from(_IDS[1:]))
            values = draw(st.lists(st.sampled_from(_VALUES), max_size=14))
            body.insert(draw(st.integers(0, len(body))), fs.join([seg_id, *values]))
            continue
        i = draw(st.integers(0, len(body) - 1))
        if what == "drop":
            body.pop(i)
        elif what == "dup":
            body.insert(draw(st.integers(0, len(body))), body[i])
        else:
            fields = body[i].split(fs)
            n = draw(st.integers(1, 36))
            fields += [""] * (n + 1 - len(fields))
            fields[n] = draw(st.sampled_from(_VALUES))
            body[i] = fs.join(fields)
    text = "\r".join([msh, *body]) + "\r"
    delimiters = draw(st.sampled_from(_DELIMITERS))
    if delimiters:                  # the same message with other encoding characters
        text = text.translate(str.maketrans("^~\\&", delimiters))
    return text.encode("latin-1")


# Other encoding characters (component, repetition, escape, subcomponent); "" keeps ^~\&.
_DELIMITERS = ["", "", "", "#*$@", "¦}!%", "~^&\\"]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=mutated(), zone=st.sampled_from(golden.ZONES))
def test_mutated_messages_match_reference(raw: bytes, zone: object) -> None:
    assert golden.canonical(raw, zone) == _reference(raw, zone)  # type: ignore[arg-type]
