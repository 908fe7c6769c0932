"""Conflict checks end to end: the in-process engine from channel YAML, real MLLP clients, real PostgreSQL,
and the real anthropic SDK against the fake Messages API for the review after commit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conflicts.helpers import channel_text, findings, siu
from tests.e2e.harness import running_engine, write_channel
from tests.fakes.fake_anthropic import FakeAnthropic, text_body
from tests.fakes.fixtures import anthropic_fake  # noqa: F401  (fixture)
from tests.mllp_client import AsyncMllpClient, err, msa

BLOCK = channel_text("  - parse\n  - validate\n  - conflict_check: {policy: block}\n  - persist\n")
ROOM = "RES-ROOM-OVERLAP"
GOOD = {"findings": [{"rule": "AI-PREP-CLASH", "severity": "info",
                      "message": "Fasting instructions should be checked.", "other": None}]}


async def wait_for(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    async with asyncio.timeout(timeout):
        while True:
            value = check()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(0.05)


async def outbox(db_url: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(db_url)
    try:
        return [dict(r) for r in await conn.fetch("SELECT status, attempts FROM outbox ORDER BY id")]
    finally:
        await conn.close()


def channels(tmp_path: Path, body: str | None = None) -> Path:
    directory = tmp_path / "channels"
    write_channel(directory, "scheduling", body or channel_text())
    return directory


async def test_double_booked_scanner_is_flagged_naming_the_first(tmp_path: Path, db_url: str) -> None:
    async with running_engine(channels(tmp_path), tmp_path / "data", database_url=db_url) as engine:
        client = await AsyncMllpClient.connect("127.0.0.1", engine.servers[0].port)
        try:
            assert msa(await client.request(siu(control="C1", filler="A1", mrn="M1")))[1] == "AA"
            assert msa(await client.request(siu(control="C2", filler="A2", mrn="M2",
                                                start="20260310091000")))[1] == "AA"
        finally:
            await client.close()
    [found] = await findings(db_url, "A2")
    assert (found["rule"], found["severity"], found["other"]) == (ROOM, "block", "scheduling|F:A1")
    assert [e["other"] for e in await findings(db_url, "A1")] == ["scheduling|F:A2"]


async def test_block_policy_answers_ae_with_an_err_naming_rule_and_appointment(
        tmp_path: Path, db_url: str) -> None:
    async with running_engine(channels(tmp_path, BLOCK), tmp_path / "data", database_url=db_url) as engine:
        client = await AsyncMllpClient.connect("127.0.0.1", engine.servers[0].port)
        try:
            assert msa(await client.request(siu(control="C1", filler="A1", mrn="M1")))[1] == "AA"
            reply = await client.request(siu(control="C2", filler="A2", mrn="M2"))
            # the sender fixes the slot and resends under a new control id: accepted
            fixed = await client.request(siu(control="C3", filler="A2", mrn="M2", start="20260310100000"))
        finally:
            await client.close()
    assert msa(reply)[1] == "AE" and ROOM in msa(reply)[3]
    fields = err(reply)
    assert fields is not None and fields[2].startswith("AIL") and fields[3].startswith("205^")
    assert ROOM in fields[7] and "#" in fields[7]          # ERR-7: rule, other appointment's row id
    assert ROOM in fields[8] and "F:A1" in fields[8]       # ERR-8: rule, the sender's appointment id
    assert msa(fixed)[1] == "AA"


async def test_patient_booked_across_modalities_barium_then_ct_and_a_cancelled_slot(
        tmp_path: Path, db_url: str) -> None:
    async with running_engine(channels(tmp_path), tmp_path / "data", database_url=db_url) as engine:
        client = await AsyncMllpClient.connect("127.0.0.1", engine.servers[0].port)
        try:
            sent = [
                siu(control="C1", filler="A1", mrn="M1", room="CT1"),
                siu(control="C2", filler="A2", mrn="M1", room="MR1", code="70551", text="MRI BRAIN",
                    start="20260310091500"),                               # same patient, MR, overlapping
                siu(control="C3", filler="B1", mrn="M2", room="RF1", code="74240",
                    text="UPPER GI WITH BARIUM", start="20260312090000", minutes=45),
                siu(control="C4", filler="B2", mrn="M2", room="CT2", start="20260313090000"),  # CT 24 h later
                siu(control="C5", filler="C1", mrn="M3", room="CT3", start="20260316090000"),
                siu("S15", "C6", "C1", mrn="M3", status="Cancelled", sent="20260301130000",
                    resources=False),
                siu(control="C7", filler="C2", mrn="M4", room="CT3", start="20260316090000",
                    sent="20260301140000"),                                # the freed slot
            ]
            replies = [msa(await client.request(m))[1] for m in sent]
        finally:
            await client.close()
    assert replies == ["AA"] * len(sent)
    assert [(e["rule"], e["other"]) for e in await findings(db_url, "A2")] == [
        ("PAT-DOUBLE-BOOK", "scheduling|F:A1")]
    assert ("SEQ-BARIUM-THEN-CT-ABD", "scheduling|F:B1") in [
        (e["rule"], e["other"]) for e in await findings(db_url, "B2")]
    assert await findings(db_url, "C1") == [] and await findings(db_url, "C2") == []


async def test_two_connections_booking_one_slot_at_once(tmp_path: Path, db_url: str) -> None:
    async with running_engine(channels(tmp_path), tmp_path / "data", database_url=db_url) as engine:
        port = engine.servers[0].port
        first, second = (await AsyncMllpClient.connect("127.0.0.1", port),
                         await AsyncMllpClient.connect("127.0.0.1", port))
        try:
            for i in range(6):
                start, room = f"202603{10 + i:02d}090000", f"SCAN{i}"
                x = siu(control=f"X{i}", filler=f"X{i}", mrn=f"MX{i}", start=start, room=room)
                y = siu(control=f"Y{i}", filler=f"Y{i}", mrn=f"MY{i}", start=start, room=room)
                replies = await asyncio.gather(first.request(x), second.request(y))
                assert [msa(r)[1] for r in replies] == ["AA", "AA"]
        finally:
            await first.close()
            await second.close()
    for i in range(6):
        x, y = await findings(db_url, f"X{i}"), await findings(db_url, f"Y{i}")
        own = [e for e in x + y if not e["details"].get("reverse")]
        assert [(e["rule"], e["other"]) for e in own] in (
            [(ROOM, f"scheduling|F:Y{i}")], [(ROOM, f"scheduling|F:X{i}")])   # exactly one saw the other
        assert len(x) == len(y) == 1                                            # and the other has the mirror


async def test_claude_answer_is_stored_after_the_ack(
        tmp_path: Path, db_url: str, anthropic_fake: FakeAnthropic) -> None:  # noqa: F811
    anthropic_fake.default_input = GOOD
    anthropic_fake.reply(200, delay=4.0)                  # the first analysis is held for a while
    env = {**anthropic_fake.env(), "RADSCHED_OUTBOX_POLL_SECONDS": "0.05"}
    async with running_engine(channels(tmp_path), tmp_path / "data", database_url=db_url, env=env) as engine:
        port = engine.servers[0].port
        client = await AsyncMllpClient.connect("127.0.0.1", port)
        try:
            assert msa(await client.request(siu(control="C1", filler="A1", mrn="M1")))[1] == "AA"
            assert not [e for e in await findings(db_url, "A1") if e["source"] == "ai"]
            await wait_for(lambda: anthropic_fake.requests)          # the review is under way ...
            reply = await client.request(siu(control="C2", filler="A2", mrn="M2", start="20260311090000"))
            assert msa(reply)[1] == "AA"                             # ... and does not hold up ACKs
            assert not [e for e in await findings(db_url, "A1") if e["source"] == "ai"]

            async def reviewed() -> bool:
                stored = [await findings(db_url, f) for f in ("A1", "A2")]
                return all(any(e["source"] == "ai" for e in entries) for entries in stored)

            await wait_for(reviewed)
        finally:
            await client.close()
    [ai] = [e for e in await findings(db_url, "A1") if e["source"] == "ai"]
    assert (ai["rule"], ai["severity"], ai["other"]) == ("AI-PREP-CLASH", "info", None)
    assert [r["status"] for r in await outbox(db_url)] == ["sent", "sent"]
    body = anthropic_fake.requests[0].raw.decode()
    assert "ZZYZXOVA" not in body and "M1" not in json.loads(body)["messages"][0]["content"]


@pytest.mark.parametrize("failure", ["429", "500", "timeout", "malformed"])
async def test_claude_failures_leave_the_rules_standing(
        tmp_path: Path, db_url: str, anthropic_fake: FakeAnthropic, failure: str) -> None:  # noqa: F811
    answers = {"429": {"status": 429}, "500": {"status": 500},
               "timeout": {"status": 200, "delay": 3.0}, "malformed": {"body": text_body("fine")}}
    anthropic_fake.reply(**answers[failure], times=20)
    env = {**anthropic_fake.env(), "RADSCHED_OUTBOX_POLL_SECONDS": "0.05", "RADSCHED_AI_MAX_ATTEMPTS": "1",
           "RADSCHED_AI_MAX_RETRIES": "1", "RADSCHED_AI_TIMEOUT": "0.3"}
    async with running_engine(channels(tmp_path), tmp_path / "data", database_url=db_url, env=env) as engine:
        client = await AsyncMllpClient.connect("127.0.0.1", engine.servers[0].port)
        try:
            assert msa(await client.request(siu(control="C1", filler="A1", mrn="M1")))[1] == "AA"
            assert msa(await client.request(siu(control="C2", filler="A2", mrn="M2")))[1] == "AA"

            async def finished() -> bool:
                return [r["status"] for r in await outbox(db_url)] == ["dead", "dead"]

            await wait_for(finished)
        finally:
            await client.close()
    per_row = 1 if failure == "malformed" else 2          # 1 outbox attempt x (1 + 1 SDK retry)
    assert len(anthropic_fake.requests) == 2 * per_row
    assert [(e["rule"], e["source"]) for e in await findings(db_url, "A2")] == [(ROOM, "rules")]
