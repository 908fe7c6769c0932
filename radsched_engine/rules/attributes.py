"""What the rules need to know about one exam: its modality, contrast, tracer, prep and slot length."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MODALITIES = ("CT", "MR", "US", "XR", "NM", "PT", "MG", "RF", "DXA")
MODALITY_ALIASES = {
    "MRI": "MR", "CR": "XR", "DX": "XR", "PET": "PT", "BMD": "DXA", "DEXA": "DXA", "FL": "RF",
    "XA": "RF", "MAMMO": "MG", "CTA": "CT",
}
GI_STUDIES = ("", "kub", "ivu", "enema", "ugi", "swallow", "sbft")
STRESS = ("", "exercise", "pharmacologic")
RADIOIODINE = ("", "diagnostic", "therapy")
ACTIVITY = ("", "high", "low")

# Body regions whose radiographic/CT/fluoroscopic exams irradiate the abdomen or pelvis (F4).
ABD_PELVIS_REGIONS = frozenset({
    "abdomen", "pelvis", "abdomen_pelvis", "chest_abdomen_pelvis", "lumbar_spine", "hip",
    "whole_body", "gi", "urinary", "colon",
})
# CT regions whose exams need a pregnancy test within 72 h in most policies (F4 "high dose").
HIGH_DOSE_CT_REGIONS = frozenset({"abdomen", "pelvis", "abdomen_pelvis", "chest_abdomen_pelvis"})


@dataclass(frozen=True, slots=True)
class ExamAttributes:
    """Derived exam attributes from the procedure table (or inferred from the service text)."""

    code: str = ""
    name: str = ""
    modality: str = ""             # CT MR US XR NM PT MG RF DXA, or "" when unknown
    body_region: str = ""
    iv_iodinated: bool = False     # IV (or intra-arterial/intrathecal) iodinated contrast
    intra_arterial: bool = False   # intra-arterial study (F3: risk of renal emboli)
    gbca: bool = False             # gadolinium
    oral_barium: bool = False
    oral_contrast: bool = False    # oral iodinated/neutral contrast drunk beforehand
    oral_intake: bool = False      # the patient eats or drinks for the exam (test meal, glucose load)
    gi_study: str = ""             # S2 order: kub, ivu, enema, ugi, swallow, sbft
    radiotracer: str = ""          # isotope family: Tc-99m, I-123, I-131, Ga-67, In-111, F-18, ...
    tracer_activity: str = ""      # high | low
    fdg: bool = False              # FDG PET (S9)
    radioiodine: str = ""          # diagnostic | therapy
    thyroid_nm: bool = False
    ionizing_abd_pelvis: bool = False
    high_dose_pelvic: bool = False  # F4: pregnancy test within 72 h required
    needs_sedation: bool = False
    npo_hours: float = 0.0
    stress_test: str = ""          # exercise | pharmacologic
    typical_minutes: int = 0
    min_minutes: int = 0
    prep: str = ""                 # patient prep text (S11 info findings, patient SMS)
    source: str = "code"           # code | keyword | unknown

    @property
    def barium(self) -> bool:
        """Barium given by mouth or as an enema."""
        return self.oral_barium or self.gi_study == "enema"

    @property
    def known(self) -> bool:
        return self.source != "unknown"


ATTRIBUTE_NAMES = tuple(f.name for f in dataclasses.fields(ExamAttributes) if f.name != "source")
_TYPES = {f.name: f.type for f in dataclasses.fields(ExamAttributes)}
_CHOICES = {"modality": ("", *MODALITIES), "gi_study": GI_STUDIES, "stress_test": STRESS,
            "radioiodine": RADIOIODINE, "tracer_activity": ACTIVITY}


def _closest(name: str, options: tuple[str, ...]) -> str:
    import difflib
    close = difflib.get_close_matches(name, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_attributes(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Type-checked attribute values from a YAML mapping; raises ValueError naming ``where``."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in _TYPES or name == "source":
            raise ValueError(f"{where}: unknown attribute {name!r}{_closest(str(name), ATTRIBUTE_NAMES)}")
        kind = _TYPES[name]
        if kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{where}: {name} must be true or false, got {value!r}")
        elif kind == "int":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{where}: {name} must be a whole number >= 0, got {value!r}")
        elif kind == "float":
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{where}: {name} must be a number >= 0, got {value!r}")
            value = float(value)
        else:
            value = "" if value is None else str(value)
            if name == "modality":
                value = MODALITY_ALIASES.get(value.upper(), value.upper())
            if name in _CHOICES and value not in _CHOICES[name]:
                allowed = ", ".join(c for c in _CHOICES[name] if c)
                raise ValueError(f"{where}: {name} {value!r} is not one of {allowed}")
        out[name] = value
    return out


def derive(values: dict[str, Any]) -> dict[str, Any]:
    """Fill the attributes that follow from others, unless given explicitly."""
    modality = values.get("modality", "")
    region = values.get("body_region", "")
    if "ionizing_abd_pelvis" not in values:
        values["ionizing_abd_pelvis"] = modality in ("NM", "PT") or (
            modality in ("CT", "XR", "RF") and region in ABD_PELVIS_REGIONS)
    if "high_dose_pelvic" not in values:
        values["high_dose_pelvic"] = modality == "CT" and region in HIGH_DOSE_CT_REGIONS
    if "thyroid_nm" not in values and values.get("radioiodine"):
        values["thyroid_nm"] = True
    if values.get("min_minutes", 0) and not values.get("typical_minutes"):
        values["typical_minutes"] = values["min_minutes"]
    return values


def build(values: Mapping[str, Any], source: str = "code") -> ExamAttributes:
    return ExamAttributes(**{k: v for k, v in values.items() if k in _TYPES}, source=source)
