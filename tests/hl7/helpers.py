"""Shared test helpers: the public sample corpus, message splitting, and stages built from YAML."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from radsched_engine.config.loader import load_channel_text
from radsched_engine.exchange import Exchange
from radsched_engine.pipeline import Resources, Stage
from radsched_engine.stages import parse, validate

SAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "hl7-samples"
STAGES = {"parse": parse.SPEC, "validate": validate.SPEC}


def sample_files() -> list[Path]:
    """Every ``*.hl7`` file of the shared corpus (the test is skipped when the corpus is absent)."""
    if not SAMPLES.is_dir():
        pytest.skip(f"public HL7 sample corpus not found at {SAMPLES} (it lives next to the repo)")
    files = sorted(SAMPLES.glob("*.hl7"))
    if not files:
        pytest.skip(f"no *.hl7 files in {SAMPLES}")
    return files


def sample(name: str) -> bytes:
    path = SAMPLES / name
    if not path.is_file():
        pytest.skip(f"sample {name} not found in {SAMPLES}")
    return path.read_bytes()


def split_messages(raw: bytes) -> list[bytes]:
    """Messages of a batch or multi-message file: a new one at every line starting with MSH.

    Lines before the first MSH (FHS/BHS) and batch trailers (BTS/FTS) are dropped.
    """
    lines = raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r")
    messages: list[list[bytes]] = []
    for line in lines:
        bare = line.lstrip(b"\x0b\x1c")
        if bare.startswith(b"MSH"):
            messages.append([bare])
        elif messages and not bare.startswith((b"BTS", b"FTS")):
            messages[-1].append(line)
    return [b"\r".join(m) + b"\r" for m in messages] or [raw]


def messages_of(path: Path) -> list[bytes]:
    raw = path.read_bytes()
    if path.name.startswith(("batch_", "multi_")):
        return split_messages(raw)
    return [raw]


class Settings:
    """A minimal stand-in for the channel settings: what validate reads."""

    def __init__(self, accept: tuple[str, ...] = ("SIU^S12", "SIU^S13", "SIU^S14", "SIU^S15",
                                                   "SIU^S17", "SIU^S26", "ORM^O01", "OMI^O23")):
        self.accept = accept


def build(yaml_pipeline: str, accept: str = "[SIU^S12, SIU^S13, SIU^S14, SIU^S15, SIU^S17, SIU^S26, "
          "ORM^O01, OMI^O23]") -> list[Stage]:
    """Stages built from a channel's ``pipeline:`` YAML through the real config loader."""
    text = f"listen: 127.0.0.1:0\naccept: {accept}\npipeline:\n{yaml_pipeline}"
    config = load_channel_text(text, stages=STAGES)
    resources = Resources(config.name, config)
    return [STAGES[step.name].factory(step.options, resources) for step in config.pipeline]


def exchange(raw: bytes) -> Exchange:
    return Exchange(raw, "test", "127.0.0.1:5000", datetime.now(UTC))


async def run(stages: list[Stage], raw: bytes) -> Exchange:
    """Run stages in order on one message (signals propagate to the caller)."""
    ex = exchange(raw)
    for stage in stages:
        await stage(ex)
    return ex


def run_sync(stages: list[Stage], raw: bytes) -> Exchange:
    """``run`` without an event loop (parse and validate never suspend); for hypothesis tests."""
    ex = exchange(raw)
    for stage in stages:
        coro = stage(ex)
        try:
            coro.send(None)
        except StopIteration:
            continue
        coro.close()
        raise AssertionError("stage suspended")
    return ex


def hl7(*segments: str) -> bytes:
    """A message from segment strings, CR-terminated."""
    return ("\r".join(segments) + "\r").encode()


def seg(seg_id: str, fields: dict[int, str]) -> str:
    """A segment from ``{field number: raw value}`` (no counting of separators by hand)."""
    last = max(fields, default=0)
    return "|".join([seg_id, *(fields.get(n, "") for n in range(1, last + 1))])
