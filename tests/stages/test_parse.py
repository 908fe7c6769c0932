"""The parse stage, built from YAML: broken lines, glued segments, unknown segments, control bytes."""

from __future__ import annotations

import pytest

from radsched_engine.config.hints import schema_issues
from radsched_engine.config.pipeline_steps import lint_example
from radsched_engine.config.problems import ConfigError
from radsched_engine.errors import Reject
from radsched_engine.stages.parse import SPEC, ParseOptions
from tests.hl7.helpers import STAGES, build, exchange, hl7, run, sample

MSH = "MSH|^~\\&|RIS|HOSP|RADSCHED|RAD|20250301120000||ORM^O01|C1|P|2.3"
BROKEN = (MSH + "\nPID|1||42^^^H^MR||DOE^JANE\nORC|NW|1\nOBR|1|||||||||||||||||(608)258-\n"
          "8866||x|y\nDG1|1\n").encode()


def test_spec_is_a_good_schema_and_its_example_lints() -> None:
    assert schema_issues(ParseOptions) == []
    assert lint_example(SPEC, STAGES) == []


async def test_sets_the_message() -> None:
    ex = await run(build("  - parse\n"), hl7(MSH, "PID|1||42"))
    assert ex.message is not None and ex.message.get("PID-3") == "42"
    assert ex.warnings == []


async def test_no_msh_is_reject_100() -> None:
    with pytest.raises(Reject) as info:
        await run(build("  - parse\n"), b"PID|1||42\r")
    assert info.value.code == 100 and str(info.value.location) == "MSH"


async def test_line_break_inside_a_field_is_rejected_by_default() -> None:
    stages = build("  - parse\n")
    ex = exchange(BROKEN)
    with pytest.raises(Reject) as info:
        await stages[0](ex)
    problem = info.value.problem
    assert problem.code == 100
    assert problem.location is not None and (problem.location.segment, problem.location.sequence) == (
        "OBR", 1)
    assert "8866" not in problem.text and "608" not in problem.text      # no data in the text
    assert ex.message is not None and ex.message.control_id == "C1"    # still there for the ACK


async def test_line_break_inside_a_field_can_be_rejoined() -> None:
    ex = await run(build("  - parse: {broken_segments: rejoin}\n"), BROKEN)
    assert ex.message is not None
    assert ex.message.segment_ids == ["MSH", "PID", "ORC", "OBR", "DG1"]
    assert ex.message.get("OBR-18") == "(608)258-8866" and ex.message.get("OBR-20") == "x"
    assert [(w.code, w.severity) for w in ex.warnings] == [(100, "W")]


async def test_epic_sample_with_broken_field() -> None:
    raw = sample("orm_o01_epic_lf_broken_field_1.hl7")
    with pytest.raises(Reject) as info:
        await run(build("  - parse\n"), raw)
    assert info.value.code == 100
    ex = await run(build("  - parse: {broken_segments: rejoin}\n"), raw)
    assert ex.message is not None and ex.message.malformed == ()
    assert ex.message.get("OBR-17").endswith("8866")


@pytest.mark.parametrize(("name", "segment", "glued"), [
    ("siu_s12_dcm4che_broken_segment_join_1.hl7", "PV1", "RGS"),
    ("oru_r01_hapi_npac_rad_joined_segments_1.hl7", "OBR", "OBX"),
])
async def test_two_segments_on_one_line_are_rejected(name: str, segment: str, glued: str) -> None:
    with pytest.raises(Reject) as info:
        await run(build("  - parse\n"), sample(name))
    problem = info.value.problem
    assert problem.code == 100 and problem.location is not None
    assert problem.location.segment == segment and glued in problem.text


async def test_glued_segment_in_a_made_up_message() -> None:
    raw = hl7(MSH, "PID|1||42", "PV1|1|O|||| RGS|1|A")
    with pytest.raises(Reject) as info:
        await run(build("  - parse\n"), raw)
    assert info.value.code == 100 and str(info.value.location) == "PV1"
    # A space-prefixed value that is no segment id is just data.
    ex = await run(build("  - parse\n"), hl7(MSH, "PID|1||42|| ABC|x"))
    assert ex.message is not None


async def test_unknown_segments_warn_once_each() -> None:
    raw = hl7(MSH, "PID|1||42", "OMG|1", "WTF|2", "OMG|3", "ZDS|1.2.3", "ORC|NW")
    ex = await run(build("  - parse\n"), raw)
    assert [(w.code, w.severity, str(w.location)) for w in ex.warnings] == [
        (100, "W", "OMG"), (100, "W", "WTF")]
    ex = await run(build("  - parse: {unknown_segments: ignore}\n"), raw)
    assert ex.warnings == []
    with pytest.raises(Reject) as info:
        await run(build("  - parse: {unknown_segments: reject}\n"), raw)
    assert info.value.code == 100 and str(info.value.location) == "OMG"


async def test_unknown_segments_sample() -> None:
    ex = await run(build("  - parse\n"), sample("orm_o01_rubyhl7_unknown_segments_1.hl7"))
    assert sorted(str(w.location) for w in ex.warnings) == ["BBQ", "OMG", "WTF"]


async def test_control_characters() -> None:
    raw = hl7(MSH, "PID|1||42||DOE\x07^JANE")
    with pytest.raises(Reject) as info:
        await run(build("  - parse\n"), raw)
    loc = info.value.location
    assert info.value.code == 102 and loc is not None and (loc.segment, loc.field) == ("PID", 5)
    ex = await run(build("  - parse: {control_characters: keep}\n"), raw)
    assert ex.message is not None and ex.message.get("PID-5") == "DOE\x07"
    # Framing bytes and NULs are stripped, never rejected.
    ex = await run(build("  - parse\n"), b"\x0b" + hl7(MSH, "PID|1||4\x002") + b"\x1c\r")
    assert ex.message is not None and ex.message.get("PID-3") == "42"


async def test_charset_options() -> None:
    raw = (MSH + "\rPID|1||42||M\xfcller\r").encode("latin-1")
    ex = await run(build("  - parse: {default_charset: 8859/1}\n"), raw)
    assert ex.message is not None and ex.message.charset == "iso8859-1"
    assert ex.message.get("PID-5") == "Müller" and ex.message.charset_note == ""
    ex = await run(build("  - parse\n"), raw)
    assert ex.message is not None and ex.message.charset_note == "fallback-cp1252"


def test_unknown_charset_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        build("  - parse: {default_charset: KLINGON}\n")
    assert "unknown character set 'KLINGON'" in str(info.value)
    with pytest.raises(ConfigError):
        build("  - parse: {broken_segments: fix}\n")
