"""The procedure catalog: exam attributes by procedure code, with keyword inference for unknown codes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .attributes import ExamAttributes, build, check_attributes, derive
from .keywords import KeywordRules, normalize

DEFAULT_CODE_SYSTEMS = ("", "C4", "C5", "CPT", "CPT4", "CPT-4", "HCPCS", "HCPT", "AMA")
_CACHE_LIMIT = 4096


def _read_default() -> tuple[str, str]:
    ref = resources.files("radsched_engine") / "data" / "procedures.yaml"
    return ref.read_text(encoding="utf-8"), "radsched_engine/data/procedures.yaml"


def _override_values(value: object) -> dict[str, Any]:
    """A plain mapping from an override given as a mapping or as a dataclass (None fields = keep)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)
                if getattr(value, f.name) is not None}
    if isinstance(value, Mapping):
        return dict(value)
    raise ValueError(f"procedure override must be a mapping, got {type(value).__name__}")


class ProcedureCatalog:
    """Exam attributes by code (CPT by default) plus keyword rules for free text.

    ``lookup`` is cheap after the first call for a given (code, text, system): results are cached.
    """

    def __init__(self, entries: Mapping[str, dict[str, Any]], keywords: Mapping[str, Any],
                 defaults: Mapping[str, Mapping[str, Any]], code_systems: tuple[str, ...],
                 where: str) -> None:
        self._defaults = {m: dict(v) for m, v in defaults.items()}
        self._entries: dict[str, ExamAttributes] = {}
        for code, values in entries.items():
            default = self._defaults.get(values.get("modality", ""), {})
            merged = {**default, **values, "code": code}
            if values.get("prep") and default.get("prep") and default["prep"] not in values["prep"]:
                merged["prep"] = f"{values['prep']} {default['prep']}"
            self._entries[code] = build(derive(merged))
        self._keywords = KeywordRules(keywords, lambda c: c.upper() in self._entries, where)
        self._code_systems = frozenset(s.upper() for s in code_systems)
        self._cache: dict[tuple[str, str, str], ExamAttributes] = {}

    @classmethod
    def load(cls, path: str | Path | None = None,
             overrides: Mapping[str, object] | None = None) -> ProcedureCatalog:
        """The table at ``path`` (default: the packaged one), with per-code ``overrides`` applied.

        An override key is a code, or ``SYSTEM:code`` for a local coding system; its value sets
        attributes, and ``same_as: <code>`` starts from another entry's attributes.
        Raises ValueError (naming the file and entry) for anything malformed.
        """
        if path is None:
            text, where = _read_default()
        else:
            where = str(path)
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"{where}: cannot read procedure table: {exc.strerror}") from None
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{where}: not valid YAML: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("procedures"), dict):
            raise ValueError(f"{where}: expected a mapping with a 'procedures' mapping")
        defaults = {str(m).upper(): check_attributes(v or {}, f"{where}: modality_defaults.{m}")
                    for m, v in (doc.get("modality_defaults") or {}).items()}
        raw = dict(doc["procedures"])
        for code, values in (overrides or {}).items():
            given = _override_values(values)
            check_attributes({k: v for k, v in given.items() if k != "same_as"},
                             f"procedure_overrides.{code}")
            # An override naming ``same_as`` replaces the entry; otherwise it changes some attributes.
            raw[code] = given if given.get("same_as") else {**(raw.get(code) or {}), **given}
        entries: dict[str, dict[str, Any]] = {}
        pending = {str(k).strip().upper(): dict(v or {}) for k, v in raw.items()}
        for code in list(pending):
            entries[code] = cls._resolve_same_as(code, pending, where, set())
        systems = tuple(str(s) for s in doc.get("code_systems", DEFAULT_CODE_SYSTEMS))
        return cls(entries, doc.get("keywords") or {}, defaults, systems, where)

    @staticmethod
    def _resolve_same_as(code: str, pending: dict[str, dict[str, Any]], where: str,
                         seen: set[str]) -> dict[str, Any]:
        values = dict(pending[code])
        base = str(values.pop("same_as", "") or "").strip().upper()
        label = f"{where}: procedures.{code}"
        if base:
            if base in seen or base == code:
                raise ValueError(f"{label}: same_as forms a cycle through {base!r}")
            if base not in pending:
                raise ValueError(f"{label}: same_as {base!r} is not in the procedure table")
            inherited = ProcedureCatalog._resolve_same_as(base, pending, where, seen | {code})
            values = {**{k: v for k, v in inherited.items() if k != "code"}, **values}
        return check_attributes(values, label)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and code.strip().upper() in self._entries

    def get(self, code: str) -> ExamAttributes | None:
        """The table entry for a code, exactly as configured (no text inference)."""
        return self._entries.get(code.strip().upper())

    def lookup(self, code: str, text: str = "", coding_system: str = "") -> ExamAttributes:
        """Attributes for a procedure: by code first, then by keywords in the text, else "unknown".

        A code given in a coding system that is not CPT-like is taken from the table only when
        ``SYSTEM:code`` is configured, or when the text does not contradict the table's modality.
        """
        key = (code, text, coding_system)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._resolve(code.strip().upper(), text, coding_system.strip().upper())
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def _resolve(self, code: str, text: str, system: str) -> ExamAttributes:
        norm = normalize(text)
        base = self._entries.get(f"{system}:{code}") if system and code else None
        if base is None and code in self._entries:
            entry = self._entries[code]
            if system in self._code_systems:
                base = entry
            else:
                said = self._keywords.detect_modality(norm) if norm else ""
                base = entry if said in ("", entry.modality) else None
        if base is None:
            base = self._infer(code, text, norm)
        extra = self._keywords.modify(norm) if norm else {}
        if extra:
            if extra.get("prep") and base.prep:   # modifiers add prep text, they do not replace it
                extra["prep"] = f"{base.prep} {extra['prep']}"
            base = dataclasses.replace(base, **extra)
        return base

    def _infer(self, code: str, text: str, norm: str) -> ExamAttributes:
        guess = self._keywords.infer(norm) if norm else None
        if guess is None or (not guess.modality and not guess.code):
            return ExamAttributes(code=code, name=text, source="unknown")
        if guess.code:
            values = {f.name: getattr(self._entries[guess.code], f.name)
                      for f in dataclasses.fields(ExamAttributes) if f.name != "source"}
            values.update(guess.attrs or {})
            values.update(code=code, name=text)
            return build(values, source="keyword")
        values: dict[str, Any] = {**self._defaults.get(guess.modality, {}),
                                  "code": code, "name": text, "modality": guess.modality,
                                  "body_region": guess.region}
        if guess.contrast in ("with", "with_without"):
            if guess.modality == "CT":
                values["iv_iodinated"] = True
            elif guess.modality == "MR":
                values["gbca"] = True
        return build(derive(values), source="keyword")
