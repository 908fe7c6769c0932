"""The validate stage, built from YAML: every outcome with its HL7 code and error location."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from radsched_engine.config.hints import schema_issues
from radsched_engine.config.pipeline_steps import lint_example
from radsched_engine.config.problems import ConfigError
from radsched_engine.errors import Location, Reject
from radsched_engine.pipeline import Resources
from radsched_engine.stages.parse import ParseOptions, ParseStage
from radsched_engine.stages.validate import SPEC, ValidateOptions, ValidateStage
from tests.hl7.helpers import STAGES, build, hl7, run, sample

PIPELINE = "  - parse\n  - validate\n"


def siu(msh: str = "MSH|^~\\&|RIS|HOSP|RADSCHED|RAD|20250301120000||SIU^S12|C1|P|2.5",
        sch: str = "SCH|P1|F1||||^Routine|||30|min|^^30^20250315090000", *rest: str) -> bytes:
    return hl7(msh, sch, "PID|1||MRN42^^^HOSP^MR||DOE^JANE||19700101", *rest)


async def reject(raw: bytes, pipeline: str = PIPELINE, accept: str | None = None) -> Reject:
    stages = build(pipeline) if accept is None else build(pipeline, accept)
    with pytest.raises(Reject) as info:
        await run(stages, raw)
    return info.value


def test_spec_is_a_good_schema_and_its_example_lints() -> None:
    assert schema_issues(ValidateOptions) == []
    assert lint_example(SPEC, STAGES) == []


async def test_a_good_message_passes() -> None:
    ex = await run(build(PIPELINE), siu())
    assert ex.outcome is None and ex.data["hl7_version"] == "2.5"


async def test_type_not_accepted_is_200() -> None:
    err = await reject(hl7("MSH|^~\\&|A|B|C|D|20250101||ADT^A01|C1|P|2.5", "PID|1||42"))
    assert err.code == 200 and err.location == Location("MSH", 1, 9, 1, 1)
    assert "ADT" in str(err)


async def test_trigger_not_accepted_is_201() -> None:
    err = await reject(siu(msh="MSH|^~\\&|A|B|C|D|20250101||SIU^S23|C1|P|2.5"))
    assert err.code == 201 and err.location == Location("MSH", 1, 9, 1, 2)
    err = await reject(siu(msh="MSH|^~\\&|A|B|C|D|20250101||SIU|C1|P|2.5"))
    assert err.code == 201


async def test_accept_comes_from_the_channel() -> None:
    raw = siu(msh="MSH|^~\\&|A|B|C|D|20250101||SIU^S14|C1|P|2.5")
    err = await reject(raw, accept="[SIU^S12, ORM^O01]")
    assert err.code == 201
    ex = await run(build(PIPELINE, "[SIU^S12, SIU^S14]"), raw)
    assert ex.message is not None
    # Outside a channel (a settings object without ``accept``), every type is taken.
    res = Resources("t", SimpleNamespace())
    stage = ValidateStage(ValidateOptions(), res)
    ex = await run([ParseStage(ParseOptions(), res), stage], raw)
    assert ex.message is not None


@pytest.mark.parametrize("pid", ["", "X", "Q^A"])
async def test_processing_id_202(pid: str) -> None:
    err = await reject(siu(msh=f"MSH|^~\\&|A|B|C|D|20250101||SIU^S12|C1|{pid}|2.5"))
    assert err.code == 202 and err.location == Location("MSH", 1, 11, 1, 1)


async def test_processing_id_default_and_list() -> None:
    raw = siu(msh="MSH|^~\\&|A|B|C|D|20250101||SIU^S12|C1||2.5")
    ex = await run(build("  - parse\n  - validate: {default_processing_id: P}\n"), raw)
    assert ex.message is not None
    raw = siu(msh="MSH|^~\\&|A|B|C|D|20250101||SIU^S12|C1|T|2.5")
    err = await reject(raw, "  - parse\n  - validate: {processing_ids: [P]}\n")
    assert err.code == 202


@pytest.mark.parametrize("version", ["3.0", "2.1", ""])
async def test_version_203(version: str) -> None:
    err = await reject(siu(msh=f"MSH|^~\\&|A|B|C|D|20250101||SIU^S12|C1|P|{version}"))
    assert err.code == 203 and err.location == Location("MSH", 1, 12, 1, 1)


async def test_truncated_msh_with_default_version() -> None:
    raw = siu(msh="MSH|^~\\&|A|B|C|D|20250101||SIU^S12|C1|P")
    ex = await run(build('  - parse\n  - validate: {default_version: "2.3"}\n'), raw)
    assert ex.data["hl7_version"] == "2.3"
    err = await reject(sample("siu_s12_nodehl7_epic_1.hl7"))      # MSH ends after MSH-10
    assert err.code == 202
    ex = await run(build('  - parse\n  - validate: {default_version: "2.3", default_processing_id: P}\n'),
                   sample("siu_s12_nodehl7_epic_1.hl7"))
    assert ex.message is not None and ex.message.control_id == "521"


@pytest.mark.parametrize("control", ["", "  "])
async def test_missing_control_id_is_101(control: str) -> None:
    err = await reject(siu(msh=f"MSH|^~\\&|A|B|C|D|20250101||SIU^S12|{control}|P|2.5"))
    assert err.code == 101 and err.location == Location("MSH", 1, 10)


async def test_missing_sch_is_100() -> None:
    raw = hl7("MSH|^~\\&|A|B|C|D|20250101||SIU^S12|C1|P|2.5", "PID|1||42")
    err = await reject(raw)
    assert err.code == 100 and err.location == Location("SCH")
    err = await reject(sample("siu_s12_gmed_no_sch_1.hl7"))
    assert err.code == 100 and err.location is not None and err.location.segment == "SCH"


@pytest.mark.parametrize("sch", ["SCH||||||x", 'SCH|""|^^^||||x', "SCH| | "])
async def test_no_appointment_id_is_101(sch: str) -> None:
    err = await reject(siu(sch=sch))
    assert err.code == 101 and err.location == Location("SCH", 1, 1, 1, None)
    assert "SCH-1 or SCH-2" in str(err)


async def test_either_appointment_id_is_enough() -> None:
    for sch in ("SCH|P1", "SCH||F1"):
        ex = await run(build(PIPELINE), siu(sch=sch))
        assert ex.message is not None


async def test_missing_pid3_is_101_without_echoing_data() -> None:
    raw = hl7("MSH|^~\\&|A|B|C|D|20250101||SIU^S12|C1|P|2.5", "SCH|P1", "PID|1|||SECRETNAME")
    err = await reject(raw)
    assert err.code == 101 and err.location == Location("PID", 1, 3, 1, None)
    assert "SECRET" not in str(err)
    raw = hl7("MSH|^~\\&|A|B|C|D|20250101||SIU^S12|C1|P|2.5", "SCH|P1")
    err = await reject(raw)
    assert err.code == 100 and err.location == Location("PID")


async def test_orders_need_orc1_in_every_order() -> None:
    msh = "MSH|^~\\&|A|B|C|D|20250101||ORM^O01|C1|P|2.3"
    ok = hl7(msh, "PID|1||42", "ORC|NW|1", "OBR|1|1||CT", "ORC|NW|2", "OBR|2|2||MR")
    ex = await run(build(PIPELINE), ok)
    assert ex.message is not None
    err = await reject(hl7(msh, "PID|1||42", "ORC|NW|1", "OBR|1", "ORC||2", "OBR|2"))
    assert err.code == 101 and err.location == Location("ORC", 2, 1, 1, None)
    err = await reject(hl7(msh, "PID|1||42", "OBR|1"))
    assert err.code == 100 and err.location == Location("ORC")
    err = await reject(hl7(msh, "ORC|NW|1"))
    assert err.code == 101 and err.location == Location("PID", 1, 3, 1, None)
    assert "no PID segment" in str(err)


async def test_required_is_configurable_per_type_and_trigger() -> None:
    pipeline = ('  - parse\n  - validate:\n      required:\n        "SIU^S12": [SCH-11.4|TQ1-7, AIS]\n'
                '        ORM: [ORC]\n')
    err = await reject(siu(sch="SCH|P1"), pipeline)
    assert err.code == 101 and err.location == Location("SCH", 1, 11, 1, 4)
    err = await reject(siu(), pipeline)
    assert err.code == 100 and err.location == Location("AIS")
    raw = siu("MSH|^~\\&|A|B|C|D|20250101||SIU^S12|C1|P|2.5", "SCH|P1", "TQ1|1||||||20250315090000",
              "AIS|1|A|CT")
    ex = await run(build(pipeline), raw)
    assert ex.message is not None
    # ORM's defaults were replaced: PID-3 is no longer required.
    ex = await run(build(pipeline), hl7("MSH|^~\\&|A|B|C|D|20250101||ORM^O01|C1|P|2.3", "ORC|NW"))
    assert ex.message is not None


@pytest.mark.parametrize(("segment", "path", "location"), [
    ("SCH|P1|F1|||||||||^^30^2025031509 00", "", Location("SCH", 1, 11, 1, 4)),
    ("SCH|P1|F1|||||||||^^30^20250315090000^20251315", "", Location("SCH", 1, 11, 1, 5)),
    ("SCH|P1", "TQ1|1||||||Aug 15, 2025", Location("TQ1", 1, 7, 1, None)),
    ("SCH|P1", "AIL|1|A|CT1|||2025-03-15", Location("AIL", 1, 6, 1, None)),
])
async def test_malformed_times_are_102(segment: str, path: str, location: Location) -> None:
    extra = [path] if path else []
    err = await reject(siu("MSH|^~\\&|A|B|C|D|20250101||SIU^S12|C1|P|2.5", segment, *extra))
    assert err.code == 102 and err.location == location
    assert "Aug" not in str(err) and "2025" not in str(err)


async def test_second_occurrence_location_and_bad_birth_date_allowed() -> None:
    raw = siu("MSH|^~\\&|A|B|C|D|20250101||SIU^S12|C1|P|2.5", "SCH|P1",
              "AIS|1|A|CT|20250315090000", "AIS|2|A|MR|20250315 0930")
    err = await reject(raw)
    assert err.code == 102 and err.location == Location("AIS", 2, 4, 1, None)
    # PID-7 is not checked by default: a bad birth date is a warning at extraction time.
    raw = hl7("MSH|^~\\&|A|B|C|D|20250101||ORM^O01|C1|P|2.4", "PID|1||42||X||Aug 15, 1942", "ORC|XO|1")
    ex = await run(build(PIPELINE), raw)
    assert ex.message is not None
    err = await reject(raw, "  - parse\n  - validate: {timestamps: [PID-7]}\n")
    assert err.code == 102 and err.location == Location("PID", 1, 7, 1, None)


def test_bad_paths_are_config_errors() -> None:
    with pytest.raises(ConfigError) as info:
        build("  - parse\n  - validate: {timestamps: [PID7]}\n")
    assert "not an HL7 path" in str(info.value)
    with pytest.raises(ConfigError):
        build("  - parse\n  - validate: {required: {SIU: [SCH-x]}}\n")
    with pytest.raises(ConfigError):
        build("  - validate\n  - parse\n")          # validate must come after parse


@pytest.mark.parametrize(("name", "code"), [
    ("siu_s12_mieweb_1.hl7", None), ("siu_s12_pkb_1.hl7", None), ("siu_s14_corepoint_lf_1.hl7", None),
    ("siu_s17_embe7_1.hl7", None), ("orm_o01_oie_crlf_1.hl7", None), ("omi_o23_dcm4che_1.hl7", None),
    ("siu_s12_dcm4che_1.hl7", 100), ("adt_a01_mieweb_1.hl7", 200),
])
async def test_corpus_samples(name: str, code: int | None) -> None:
    stages = build(PIPELINE)
    if code is None:
        ex = await run(stages, sample(name))
        assert ex.message is not None
    else:
        with pytest.raises(Reject) as info:
            await run(stages, sample(name))
        assert info.value.code == code
