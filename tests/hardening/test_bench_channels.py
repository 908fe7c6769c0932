"""The on/off benchmarks' channels: the shipped channel file, with one stage taken out for "off".

``bench/run_conflict_bench.py`` and ``bench/run_notify_bench.py`` compare the durable channel
(``channels/default.yaml`` as shipped) with and without one stage; "off" must be that same file
minus the stage's pipeline line, still a valid channel, and a stage the file does not have must
stop the bench rather than compare a channel with itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from radsched_engine.config import load_channel_text
from radsched_engine.pipeline import registry

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from bench.run_durable_bench import shipped_channel  # noqa: E402

SHIPPED = ["parse", "validate", "conflict_check", "persist", "notify"]


def _stages(text: str) -> list[str]:
    return [s.name for s in load_channel_text(text, "default", env={}, stages=registry()).pipeline]


def test_the_on_side_is_the_shipped_file() -> None:
    text = shipped_channel()
    assert text == (ROOT / "channels" / "default.yaml").read_text()
    assert _stages(text) == SHIPPED


@pytest.mark.parametrize("stage", ["conflict_check", "notify"])
def test_the_off_side_is_the_shipped_file_without_the_stage(stage: str) -> None:
    off = shipped_channel(stage)
    assert _stages(off) == [s for s in SHIPPED if s != stage]
    on_lines = shipped_channel().splitlines()
    assert off.splitlines() == [line for line in on_lines if line != f"  - {stage}"]


def test_a_stage_the_file_lacks_stops_the_bench() -> None:
    with pytest.raises(SystemExit, match="no pipeline line '- fhir_export'"):
        shipped_channel("fhir_export")
