"""Golden lint output: each broken config in ``golden/`` and the exact ``file:line:col`` lines it gives.

A case is ``golden/<case>.yaml`` (or a directory ``golden/<case>/`` of channel files linted
together) plus ``golden/<case>.expected``. After an intended change of wording, regenerate with
``RADSCHED_REGENERATE_GOLDEN=1 pytest tests/config/test_config_golden.py`` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from radsched_engine.config import lint_paths

from .stand_ins import STAGES

GOLDEN = Path(__file__).resolve().parent / "golden"
ENV = {"GOLDEN_PORT": "86x1", "FACILITY_SUFFIX": "EAST"}
CASES = sorted(p.name for p in GOLDEN.iterdir() if p.suffix == ".yaml" or p.is_dir())


def lint_case(name: str) -> str:
    problems = lint_paths([Path(name)], env=ENV, stages=STAGES)
    return "".join(f"{p}\n" for p in problems)


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(GOLDEN)
    expected_file = GOLDEN / (Path(case).stem + ".expected")
    actual = lint_case(case)
    if os.environ.get("RADSCHED_REGENERATE_GOLDEN"):
        expected_file.write_text(actual, encoding="utf-8")
    assert expected_file.exists(), f"missing {expected_file.name}"
    assert actual == expected_file.read_text(encoding="utf-8")
    assert actual, "a golden case must have at least one problem"


def test_every_expected_file_has_a_case() -> None:
    stems = {Path(c).stem for c in CASES}
    orphans = [p.name for p in GOLDEN.glob("*.expected") if p.stem not in stems]
    assert not orphans
