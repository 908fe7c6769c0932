"""A booking's procedures folded into one profile of the attributes the rules test."""

from __future__ import annotations

from dataclasses import dataclass

from .attributes import ExamAttributes
from .catalog import ProcedureCatalog

CT_ABD_REGIONS = frozenset({"abdomen", "pelvis", "abdomen_pelvis", "chest_abdomen_pelvis", "colon"})
# S2: preferred order of a GI/urinary work-up (lower first): KUB, IVU, barium enema, UGI/small bowel.
GI_RANK = {"kub": 1, "ivu": 2, "enema": 3, "ugi": 4, "swallow": 4, "sbft": 4}


@dataclass(frozen=True, slots=True)
class Profile:
    exams: tuple[ExamAttributes, ...]
    modalities: frozenset[str]
    codes: frozenset[str]                       # "SYSTEM|CODE" of the coded procedures (R8)
    iv_iodinated: bool
    intra_arterial: bool
    gbca: bool
    barium: bool
    oral_contrast: bool
    intake: bool                                # the patient eats/drinks for this exam (S10)
    fdg: bool
    thyroid_nm: bool
    radioiodine: str                            # "therapy" wins over "diagnostic"
    tracers: tuple[tuple[str, str], ...]        # (isotope, activity)
    exercise_stress: bool
    ct_abd_pelvis: bool
    dxa: bool
    gi_ranks: tuple[tuple[int, str], ...]       # (rank, study)
    needs_sedation: bool
    ionizing_abd_pelvis: bool
    high_dose_pelvic: bool
    npo_hours: float
    min_minutes: int
    typical_minutes: int
    preps: tuple[str, ...]
    sequenced: bool                             # does any sequencing rule care about this booking?

    @property
    def mr(self) -> bool:
        return "MR" in self.modalities


def _code_key(code: str, system: str) -> str:
    return f"{system.strip().upper()}|{code.strip().upper()}"


def build_profile(procedures: tuple[tuple[str, str, str], ...], catalog: ProcedureCatalog) -> Profile:
    exams = tuple(catalog.lookup(code, text, system) for code, text, system in procedures)
    preps: list[str] = []
    for e in exams:
        if e.prep and e.prep not in preps:
            preps.append(e.prep)
    radioiodine = "therapy" if any(e.radioiodine == "therapy" for e in exams) else (
        "diagnostic" if any(e.radioiodine for e in exams) else "")
    values = dict(
        exams=exams,
        modalities=frozenset(e.modality for e in exams if e.modality),
        codes=frozenset(_code_key(c, s) for c, _, s in procedures if c.strip()),
        iv_iodinated=any(e.iv_iodinated for e in exams),
        intra_arterial=any(e.intra_arterial for e in exams),
        gbca=any(e.gbca for e in exams),
        barium=any(e.barium for e in exams),
        oral_contrast=any(e.oral_contrast for e in exams),
        intake=any(e.oral_contrast or e.oral_barium or e.oral_intake for e in exams),
        fdg=any(e.fdg for e in exams),
        thyroid_nm=any(e.thyroid_nm or e.radioiodine for e in exams),
        radioiodine=radioiodine,
        tracers=tuple(sorted({(e.radiotracer, e.tracer_activity) for e in exams if e.radiotracer})),
        exercise_stress=any(e.stress_test == "exercise" for e in exams),
        ct_abd_pelvis=any(e.modality == "CT" and e.body_region in CT_ABD_REGIONS for e in exams),
        dxa=any(e.modality == "DXA" for e in exams),
        gi_ranks=tuple(sorted({(GI_RANK[e.gi_study], e.gi_study) for e in exams if e.gi_study})),
        needs_sedation=any(e.needs_sedation for e in exams),
        ionizing_abd_pelvis=any(e.ionizing_abd_pelvis for e in exams),
        high_dose_pelvic=any(e.high_dose_pelvic for e in exams),
        npo_hours=max((e.npo_hours for e in exams), default=0.0),
        min_minutes=max((e.min_minutes for e in exams), default=0),
        typical_minutes=max((e.typical_minutes for e in exams), default=0),
        preps=tuple(preps),
    )
    sequenced = any(values[name] for name in (
        "iv_iodinated", "gbca", "barium", "oral_contrast", "intake", "fdg", "thyroid_nm", "tracers",
        "exercise_stress", "ct_abd_pelvis", "dxa", "gi_ranks", "npo_hours"))
    return Profile(**values, sequenced=sequenced)  # type: ignore[arg-type]
