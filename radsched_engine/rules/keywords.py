"""Exam attributes inferred from free service text ("CT ABD/PELVIS W CONTRAST") when the code is unknown."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .attributes import MODALITIES, MODALITY_ALIASES, check_attributes

_PUNCT = re.compile(r"[^A-Z0-9/+\-]+")
CONTRASTS = ("with", "without", "with_without")


def normalize(text: str) -> str:
    """Upper case, punctuation (except ``/ + -``) turned into single spaces."""
    return " ".join(_PUNCT.sub(" ", text.upper()).split())


def _regex(pattern: object, where: str) -> re.Pattern[str]:
    try:
        return re.compile(str(pattern))
    except re.error as exc:
        raise ValueError(f"{where}: bad regular expression {pattern!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class _Study:
    match: re.Pattern[str]
    when: frozenset[str]           # detected modalities this applies to ("" = none detected)
    same_as: str                   # catalog code whose attributes are taken
    attrs: Mapping[str, Any]       # then these are set


@dataclass(frozen=True, slots=True)
class Inference:
    """What the text says: detected modality, region and contrast, and a catalog code if one fits."""

    modality: str = ""
    region: str = ""
    contrast: str = ""
    code: str = ""                         # catalog code to start from ("" = none)
    attrs: Mapping[str, Any] | None = None  # attributes to set on top


class KeywordRules:
    """Ordered regex tables from the ``keywords`` section of the procedure table."""

    def __init__(self, section: Mapping[str, Any], known_code: Callable[[str], bool], where: str) -> None:
        def table(name: str) -> Sequence[Mapping[str, Any]]:
            items = section.get(name) or []
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise ValueError(f"{where}: keywords.{name} must be a list of mappings")
            return items

        self.modality = []
        for i, item in enumerate(table("modality")):
            mod = str(item.get("modality", "")).upper()
            mod = MODALITY_ALIASES.get(mod, mod)
            if mod not in MODALITIES:
                raise ValueError(f"{where}: keywords.modality[{i}]: unknown modality {mod!r}")
            self.modality.append((_regex(item.get("match"), f"{where}: keywords.modality[{i}]"), mod))
        self.region = [(_regex(item.get("match"), f"{where}: keywords.region[{i}]"), str(item["region"]))
                       for i, item in enumerate(table("region"))]
        self.contrast = []
        for i, item in enumerate(table("contrast")):
            if item.get("contrast") not in CONTRASTS:
                raise ValueError(f"{where}: keywords.contrast[{i}]: contrast must be one of "
                                 f"{', '.join(CONTRASTS)}")
            self.contrast.append((_regex(item.get("match"), f"{where}: keywords.contrast[{i}]"),
                                  str(item["contrast"])))
        self.studies = []
        for i, item in enumerate(table("studies")):
            label = f"{where}: keywords.studies[{i}]"
            code = str(item.get("same_as", ""))
            if code and not known_code(code):
                raise ValueError(f"{label}: same_as {code!r} is not in the procedure table")
            when = frozenset(MODALITY_ALIASES.get(str(m).upper(), str(m).upper())
                             for m in item.get("when") or ())
            self.studies.append(_Study(_regex(item.get("match"), label), when, code,
                                       check_attributes(item.get("set") or {}, label)))
        generic = section.get("generic") or {}
        if not isinstance(generic, dict):
            raise ValueError(f"{where}: keywords.generic must be a mapping")
        for key, code in generic.items():
            if not known_code(str(code)):
                raise ValueError(
                    f"{where}: keywords.generic[{key!r}]: {code!r} is not in the procedure table")
        self.generic = {str(k).strip(): str(v) for k, v in generic.items()}
        self.modifiers = [
            (_regex(item.get("match"), f"{where}: keywords.modifiers[{i}]"),
             check_attributes(item.get("set") or {}, f"{where}: keywords.modifiers[{i}]"))
            for i, item in enumerate(table("modifiers"))]

    def detect_modality(self, norm: str) -> str:
        return next((mod for rx, mod in self.modality if rx.search(norm)), "")

    def infer(self, norm: str) -> Inference:
        """Detected modality/region/contrast, then the first study pattern or generic code that fits."""
        modality = self.detect_modality(norm)
        region = next((r for rx, r in self.region if rx.search(norm)), "")
        contrast = next((c for rx, c in self.contrast if rx.search(norm)), "")
        for study in self.studies:
            if (not study.when or modality in study.when) and study.match.search(norm):
                return Inference(modality, region, contrast, study.same_as, study.attrs)
        for key in (f"{modality} {region} {contrast or 'without'}", f"{modality} {region}"):
            if key in self.generic:
                return Inference(modality, region, contrast, self.generic[key])
        return Inference(modality, region, contrast)

    def modify(self, norm: str) -> dict[str, Any]:
        """Attributes that text modifiers set on any exam (e.g. SEDATION, LEXISCAN)."""
        out: dict[str, Any] = {}
        for rx, attrs in self.modifiers:
            if rx.search(norm):
                out.update(attrs)
        return out
