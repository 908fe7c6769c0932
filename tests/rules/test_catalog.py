"""Procedure catalog: lookups by code and keywords, local coding systems, overrides, bad tables, samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from radsched_engine.rules import ProcedureCatalog, ProcedureOverride
from radsched_engine.rules.attributes import MODALITIES

CATALOG = ProcedureCatalog.load()
SAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "hl7-samples"


def test_default_table_covers_every_modality_family() -> None:
    assert 80 <= len(CATALOG) <= 250
    modalities = {CATALOG.get(code).modality for code in _codes()}  # type: ignore[union-attr]
    assert set(MODALITIES) <= modalities


def _codes() -> list[str]:
    from importlib import resources

    import yaml
    text = (resources.files("radsched_engine") / "data" / "procedures.yaml").read_text()
    return list(yaml.safe_load(text)["procedures"])


@pytest.mark.parametrize("code", _codes())
def test_every_entry_is_consistent(code: str) -> None:
    exam = CATALOG.get(code)
    assert exam is not None and exam.source == "code" and exam.name
    assert exam.min_minutes <= exam.typical_minutes
    if exam.modality in ("CT", "MR", "US", "XR", "RF", "NM", "PT", "MG", "DXA"):
        assert exam.typical_minutes > 0, "every imaging exam has a slot length"
    assert not (exam.iv_iodinated and exam.modality == "MR")
    assert not (exam.gbca and exam.modality != "MR")


@pytest.mark.parametrize(("code", "check"), [
    ("74177", lambda e: e.modality == "CT" and e.iv_iodinated and e.oral_contrast and e.high_dose_pelvic),
    ("70553", lambda e: e.modality == "MR" and e.gbca and not e.iv_iodinated and e.min_minutes == 35),
    ("74240", lambda e: e.modality == "RF" and e.oral_barium and e.barium and e.gi_study == "ugi"),
    ("74270", lambda e: e.barium and not e.oral_barium and e.gi_study == "enema"),
    ("78012", lambda e: e.thyroid_nm and e.radioiodine == "diagnostic" and e.radiotracer == "I-123"),
    ("79005", lambda e: e.radioiodine == "therapy" and e.thyroid_nm and e.radiotracer == "I-131"),
    ("78306", lambda e: e.radiotracer == "Tc-99m" and e.tracer_activity == "high"),
    ("78580", lambda e: e.tracer_activity == "low"),
    ("78815", lambda e: e.modality == "PT" and e.fdg and e.npo_hours == 6 and e.ionizing_abd_pelvis),
    ("93015", lambda e: e.stress_test == "exercise" and e.modality == ""),
    ("77080", lambda e: e.modality == "DXA" and not e.ionizing_abd_pelvis),
    ("72100", lambda e: e.modality == "XR" and e.ionizing_abd_pelvis and not e.high_dose_pelvic),
    ("71046", lambda e: not e.ionizing_abd_pelvis),
    ("74178", lambda e: e.iv_iodinated and e.name.endswith("without and with contrast")),
])
def test_lookup_by_code(code: str, check: object) -> None:
    exam = CATALOG.lookup(code, "", "CPT")
    assert exam.source == "code" and exam.code == code
    assert check(exam)  # type: ignore[operator]


@pytest.mark.parametrize(("text", "modality", "check"), [
    ("CT ABD/PELVIS W CONTRAST", "CT", lambda e: e.iv_iodinated and e.body_region == "abdomen_pelvis"),
    ("CT ABDOMEN AND PELVIS WITHOUT CONTRAST", "CT", lambda e: not e.iv_iodinated),
    ("MRI BRAIN W/WO", "MR", lambda e: e.gbca and e.body_region == "head"),
    ("MRI BRAIN W/O", "MR", lambda e: not e.gbca),
    ("MRI BRAIN W/&W/O CONTRAST", "MR", lambda e: e.gbca),
    ("BARIUM SWALLOW", "RF", lambda e: e.oral_barium and e.gi_study == "swallow"),
    ("UPPER GI WITH SMALL BOWEL FOLLOW THROUGH", "RF", lambda e: e.gi_study == "sbft"),
    ("BARIUM ENEMA DOUBLE CONTRAST", "RF", lambda e: e.gi_study == "enema"),
    ("NM THYROID UPTAKE", "NM", lambda e: e.radioiodine == "diagnostic" and e.thyroid_nm),
    ("I-131 ABLATION THERAPY", "NM", lambda e: e.radioiodine == "therapy"),
    ("PET/CT FDG", "PT", lambda e: e.fdg),
    ("PET/CT PSMA", "PT", lambda e: not e.fdg and e.radiotracer == "F-18"),
    ("GA-68 DOTATATE PET", "PT", lambda e: e.radiotracer == "Ga-68" and not e.fdg),
    ("DEXA", "DXA", lambda e: e.typical_minutes == 20),
    ("BONE DENSITY SCAN", "DXA", lambda e: True),
    ("SCREENING MAMMOGRAM BILATERAL", "MG", lambda e: "deodorant" in e.prep),
    ("NM BONE SCAN WHOLE BODY", "NM", lambda e: e.radiotracer == "Tc-99m"),
    ("GALLIUM SCAN", "NM", lambda e: e.radiotracer == "Ga-67"),
    ("US ABDOMEN COMPLETE", "US", lambda e: e.npo_hours == 6),
    ("CHEST 2 VIEWS", "XR", lambda e: e.body_region == "chest"),
    ("X-RAY ANKLE 3+ VW", "XR", lambda e: e.body_region == "lower_extremity"),
    ("CT ANGIOGRAM CHEST", "CT", lambda e: e.iv_iodinated),
    ("ANGIOGRAM ABDOMINAL AORTA", "RF", lambda e: e.intra_arterial and e.iv_iodinated),
    ("CT LUMBAR SPINE MYELOGRAM", "RF", lambda e: e.iv_iodinated),
    ("NM MPI REGADENOSON", "NM", lambda e: e.stress_test == "pharmacologic"),
    ("TREADMILL STRESS TEST", "", lambda e: e.stress_test == "exercise"),
])
def test_lookup_by_keywords(text: str, modality: str, check: object) -> None:
    exam = CATALOG.lookup("", text)
    assert exam.source == "keyword" and exam.modality == modality and exam.name == text
    assert check(exam)  # type: ignore[operator]


def test_unknown_procedure() -> None:
    exam = CATALOG.lookup("Z1", "Office visit")
    assert exam.source == "unknown" and not exam.known and exam.modality == ""
    assert not (exam.iv_iodinated or exam.gbca or exam.typical_minutes)


def test_unknown_code_with_modality_only_text() -> None:
    exam = CATALOG.lookup("LOC9", "CT SOMETHING UNUSUAL W CONTRAST", "L")
    assert exam.source == "keyword" and exam.modality == "CT" and exam.iv_iodinated


def test_local_coding_system_is_checked_against_the_text() -> None:
    # A local code that happens to equal a CPT code, but the text says otherwise.
    exam = CATALOG.lookup("71250", "MRI BRAIN W/WO", "LOCAL")
    assert exam.modality == "MR" and exam.source == "keyword"
    assert CATALOG.lookup("71250", "", "LOCAL").modality == "CT"          # no text: trust the code
    assert CATALOG.lookup("71250", "MRI BRAIN", "C4").modality == "CT"    # CPT system: trust it


def test_modifiers_apply_to_coded_exams() -> None:
    exam = CATALOG.lookup("70551", "MRI BRAIN UNDER GENERAL ANESTHESIA", "CPT")
    assert exam.needs_sedation and exam.npo_hours == 6 and exam.source == "code"
    assert "sedation" in exam.prep and "metal" in exam.prep
    assert not CATALOG.lookup("70551", "MRI BRAIN NO SEDATION", "CPT").needs_sedation


def test_overrides_change_add_and_alias_codes() -> None:
    catalog = ProcedureCatalog.load(overrides={
        "74177": {"min_minutes": 45},
        "RAD123": {"same_as": "70553", "name": "Local brain MRI"},
        "LOCAL:55": ProcedureOverride(same_as="74240"),
    })
    assert catalog.lookup("74177").min_minutes == 45 and catalog.lookup("74177").iv_iodinated
    local = catalog.lookup("RAD123")
    assert local.gbca and local.name == "Local brain MRI" and local.modality == "MR"
    assert catalog.lookup("55", "", "LOCAL").oral_barium
    assert catalog.lookup("55", "", "OTHER").source == "unknown"


def test_lookups_are_cached_and_consistent() -> None:
    assert CATALOG.lookup("", "MRI BRAIN W/WO") is CATALOG.lookup("", "MRI BRAIN W/WO")


@pytest.mark.parametrize(("body", "message"), [
    ("procedures: {'1': {modality: CT, contrastt: true}}", "procedures.1: unknown attribute 'contrastt'"),
    ("procedures: {'1': {modality: QQ}}", "modality 'QQ' is not one of"),
    ("procedures: {'1': {modality: CT, iv_iodinated: maybe}}", "iv_iodinated must be true or false"),
    ("procedures: {'1': {same_as: '2'}}", "same_as '2' is not in the procedure table"),
    ("procedures: {'1': {same_as: '2'}, '2': {same_as: '1'}}", "cycle"),
    ("procedures: {'1': {modality: CT}}\nkeywords: {modality: [{match: '(', modality: CT}]}",
     "bad regular expression"),
    ("procedures: {'1': {modality: CT}}\nkeywords: {studies: [{match: 'X', same_as: '9'}]}",
     "same_as '9' is not in the procedure table"),
    ("procedures: [1, 2]", "expected a mapping with a 'procedures' mapping"),
    ("procedures: {'1': {modality: CT}", "not valid YAML"),
])
def test_bad_tables_are_reported_with_file_and_entry(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "table.yaml"
    path.write_text(body)
    with pytest.raises(ValueError, match=f"^{path}: .*") as info:
        ProcedureCatalog.load(path)
    assert message in str(info.value)


def test_missing_table_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read procedure table"):
        ProcedureCatalog.load(tmp_path / "nope.yaml")


def test_custom_table_file(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text("procedures:\n  X1: {name: Site CT, modality: CT, body_region: pelvis,"
                    " iv_iodinated: true, min_minutes: 25}\n")
    catalog = ProcedureCatalog.load(path)
    exam = catalog.lookup("x1")
    assert exam.iv_iodinated and exam.ionizing_abd_pelvis and exam.high_dose_pelvic
    assert exam.typical_minutes == 25 and len(catalog) == 1


def _service_fields() -> list[tuple[str, str, str]]:
    """(code, text, system) of every AIS-3 and OBR-4 in the sample corpus (standard delimiters)."""
    out = []
    for path in sorted(SAMPLES.glob("*.hl7")):
        text = path.read_bytes().decode("latin-1")
        if not text.startswith("MSH|^~\\&"):
            continue
        for segment in text.replace("\r\n", "\r").replace("\n", "\r").split("\r"):
            fields = segment.split("|")
            if fields[0] in ("AIS", "OBR") and len(fields) > 4:
                parts = [*fields[3 if fields[0] == "AIS" else 4].split("^"), "", "", ""][:3]
                out.append((parts[0], parts[1], parts[2]))
    return out


def test_sample_corpus_service_ids() -> None:
    if not SAMPLES.is_dir():
        pytest.skip(f"public sample corpus not found at {SAMPLES}")
    fields = _service_fields()
    assert fields, "the corpus has AIS/OBR segments"
    looked_up = {(c, t, s): CATALOG.lookup(c, t, s) for c, t, s in fields}
    assert all(e.code == c.strip().upper() for (c, _, _), e in looked_up.items())
    by_text = {t: e for (_, t, _), e in looked_up.items()}
    assert by_text["X-RAY ANKLE 3+ VW"].modality == "XR" and by_text["X-RAY ANKLE 3+ VW"].source == "code"
    assert by_text["CT CHEST"].modality == "CT" and by_text["CT CHEST"].body_region == "chest"
    assert by_text["CT ABDOMEN"].body_region == "abdomen"
    assert by_text["CT PELVIS (LIMITED)"].body_region == "pelvis"
    assert by_text["CHEST 2 VIEWS"].modality == "XR"
    assert by_text["CBC"].source == "unknown"                    # a lab order is not an exam
