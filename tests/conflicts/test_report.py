"""``radsched-engine conflicts APPOINTMENT``: findings of a stored appointment, found by id or key."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from radsched_engine import cli
from radsched_engine.store import Store
from tests.conflicts.helpers import PATIENT_NAME, Channel, appointment_id, siu


@pytest.fixture
async def booked(store: Store, db_url: str) -> dict[str, int]:
    channel = Channel(store)
    await channel.send(siu(control="C1", filler="A1", mrn="MRN9001"))
    await channel.send(siu(control="C2", filler="A2", mrn="MRN9002", start="20260310091500"))
    await channel.send(siu(control="C3", filler="A3", mrn="MRN9003", room="CT9", code="",
                           start="20260312091500"))
    return {f: await appointment_id(db_url, f) for f in ("A1", "A2", "A3")}


def config_file(tmp_path: Path, db_url: str) -> Path:
    channels = tmp_path / "channels"
    channels.mkdir()
    (channels / "scheduling.yaml").write_text("listen: 127.0.0.1:0\npipeline: [parse]\n")
    path = tmp_path / "engine.yaml"
    path.write_text(f"database:\n  url: '{db_url}'\nchannels_dir: {channels}\n")
    return path


async def conflicts(*argv: str) -> int:
    return await asyncio.to_thread(cli.main, ["conflicts", *argv])   # runs its own event loop


async def test_findings_by_id_and_by_the_senders_ids(
        booked: dict[str, int], db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(config_file(tmp_path, db_url))
    for reference in (str(booked["A2"]), "scheduling|F:A2", "F:A2", "A2", "PA2"):
        assert await conflicts(reference, "--config", config) == 0, reference
        out = capsys.readouterr().out
        lines = out.splitlines()
        assert lines[0].startswith(f"appointment #{booked['A2']} scheduling|F:A2 (also scheduling|P:PA2)")
        assert "SEVERITY" in lines[1] and "MESSAGE" in lines[1]
        assert lines[2].split()[:3] == ["block", "rules", "RES-ROOM-OVERLAP"]
        assert f"#{booked['A1']} scheduling|F:A1" in lines[2] and "CT1" in lines[2]
        assert lines[3].split()[:3] == ["info", "rules", "PREP-INSTRUCTIONS"]
        for secret in (*PATIENT_NAME, "MRN9002", "5550147"):
            assert secret not in out
    assert await conflicts("A1", "--config", config) == 0
    mirror = capsys.readouterr().out.splitlines()[2]
    assert f"#{booked['A2']} scheduling|F:A2 (reverse)" in mirror


async def test_no_findings_json_and_not_found(
        booked: dict[str, int], db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(config_file(tmp_path, db_url))
    assert await conflicts("A3", "--config", config) == 0
    assert capsys.readouterr().out.splitlines()[1] == "  no findings"
    assert await conflicts("A2", "--json", "--config", config) == 0
    [data] = json.loads(capsys.readouterr().out)
    assert data["id"] == booked["A2"] and [e["rule"] for e in data["conflicts"]] == [
        "RES-ROOM-OVERLAP", "PREP-INSTRUCTIONS"]
    assert await conflicts("NOPE", "--config", config) == 1
    assert "no appointment matches 'NOPE'" in capsys.readouterr().err
