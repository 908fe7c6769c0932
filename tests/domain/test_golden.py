"""Extraction and persist mapping pinned by golden outputs, and robust on mutated messages.

Golden outputs of the project's own messages (full text, ``golden_extract.json``) and golden
digests of the shared public corpus (``golden_extract_shared.json``: no sample content is
stored). Rewrite them with ``python -m tests.domain.golden`` only when a change of output is
intended, and review the diff of ``golden_extract.json``. Over hypothesis-mutated messages:
extraction answers with an event or a refusal (never another exception), and the same message
written with other encoding characters (MSH-1/MSH-2) gives the same result.
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from . import golden

OWN = golden.own_messages()


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
        assert got[key] == expected[key], key


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
def mutated(draw: st.DrawFn, values: list[str] = _VALUES) -> str:
    base = draw(st.sampled_from(sorted(OWN)))
    msh, body = _segments(OWN[base])
    fs = msh[3]
    for _ in range(draw(st.integers(0, 6))):
        what = draw(st.sampled_from(["set", "set", "set", "drop", "dup", "add", "msh7"]))
        if what == "msh7":
            fields = msh.split(fs)
            if len(fields) > 6:
                fields[6] = draw(st.sampled_from(values))
                msh = fs.join(fields)
            continue
        if what == "add" or not body:
            seg_id = draw(st.sampled_from(_IDS[1:]))
            added = draw(st.lists(st.sampled_from(values), max_size=14))
            body.insert(draw(st.integers(0, len(body))), fs.join([seg_id, *added]))
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
            fields[n] = draw(st.sampled_from(values))
            body[i] = fs.join(fields)
    return "\r".join([msh, *body]) + "\r"


# Other encoding characters (component, repetition, escape, subcomponent).
_DELIMITERS = ["#*$@", "¦}!%", "~^&\\"]
# Values holding no encoding character and no escape: they read the same under any delimiters
# (an escape such as \\F\\ decodes to the delimiter in use, so it legitimately differs).
_PLAIN = [v for v in _VALUES if not any(c in v for c in "^~\\&")]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=mutated(), zone=st.sampled_from(golden.ZONES))
def test_mutated_messages_get_an_event_or_a_refusal(text: str, zone: object) -> None:
    out = golden.canonical(text.encode("latin-1"), zone)  # type: ignore[arg-type]
    assert out.startswith(("unparsed ", "{"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=mutated(_PLAIN), delimiters=st.sampled_from(_DELIMITERS),
       zone=st.sampled_from(golden.ZONES))
def test_other_encoding_characters_read_the_same(text: str, delimiters: str, zone: object) -> None:
    other = text.translate(str.maketrans("^~\\&", delimiters))
    assert golden.canonical(other.encode("latin-1"), zone) == golden.canonical(  # type: ignore[arg-type]
        text.encode("latin-1"), zone)  # type: ignore[arg-type]
