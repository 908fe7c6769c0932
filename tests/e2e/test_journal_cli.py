"""``radsched-engine journal``: the journal listed and shown from a terminal, and a rejected
message delivered again from its stored bytes once its cause is fixed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from radsched_engine import cli
from radsched_engine.cli import split_messages
from radsched_engine.store.browse import run, since_time
from tests.e2e.harness import PERSIST_CHANNEL, SAMPLES, running_engine, write_channel
from tests.mllp_client import AsyncMllpClient, msa

# The reschedule arrives before its booking (AE 204), then the booking, a frame that is not HL7,
# an ADT the channel does not take, and the booking again (a redelivery).
FILES = ["siu_s13_reschedule_ct.hl7", "siu_s12_new_ct.hl7", "malformed/no_msh.hl7",
         "malformed/adt_wrong_type.hl7", "siu_s12_new_ct.hl7"]
PATIENT_DATA = ("TESTPATIENT", "MRN100200300", "5550199", "19800415")


def _message(name: str) -> bytes:
    return split_messages((SAMPLES / name).read_bytes())[0]


async def _rows(db_url: str) -> list[dict]:
    conn = await asyncpg.connect(db_url)
    try:
        return [dict(r) for r in await conn.fetch(
            "SELECT id, control_id, message_type, outcome, ack_code, error_code, raw FROM hl7_messages "
            "ORDER BY id")]
    finally:
        await conn.close()


@pytest.fixture
async def journaled(tmp_path: Path, db_url: str):
    """The engine after FILES, still running: (its MLLP port, the ACK codes, the journal rows)."""
    write_channel(tmp_path / "channels", "sched", PERSIST_CHANNEL)
    async with running_engine(tmp_path / "channels", tmp_path / "data", database_url=db_url) as engine:
        client = await AsyncMllpClient.connect("127.0.0.1", engine.servers[0].port)
        codes = [msa(await client.request(_message(name)))[1] for name in FILES]
        await client.close()
        yield engine.servers[0].port, codes, await _rows(db_url)


async def test_lists_the_window_newest_first_without_patient_data(journaled, db_url: str) -> None:
    _, codes, rows = journaled
    assert codes == ["AE", "AA", "AR", "AR", "AA"]
    code, text = await run(db_url)
    assert code == 0 and isinstance(text, str)
    head, columns, *lines = text.splitlines()
    assert head.endswith("5 message(s) (accepted 1, duplicate 1, rejected 3)")
    assert columns.split() == ["ID", "RECEIVED", "CHANNEL", "PEER", "TYPE", "MSH-10", "OUTCOME", "ACK",
                               "ERROR"]
    assert [int(line.split()[0]) for line in lines] == [r["id"] for r in reversed(rows)]
    reschedule = next(line for line in lines if line.startswith(f"{rows[0]['id']} "))
    assert "SIU^S13" in reschedule and rows[0]["control_id"] in reschedule
    assert " rejected " in reschedule and " AE " in reschedule and "204 " in reschedule
    assert not any(value in text for value in PATIENT_DATA)


async def test_filters_by_outcome_control_id_type_channel_and_window(journaled, db_url: str) -> None:
    _, _, rows = journaled
    code, text = await run(db_url, outcomes=["rejected"])
    assert code == 0 and "3 message(s) (rejected 3)" in text
    assert len(text.splitlines()) == 2 + 3
    code, text = await run(db_url, control_id=rows[1]["control_id"])
    assert "2 message(s) (accepted 1, duplicate 1)" in text
    code, text = await run(db_url, message_type="SIU^S13", outcomes=["rejected", "error"])
    assert "1 message(s) (rejected 1)" in text
    assert "0 message(s)" in (await run(db_url, channel="other"))[1]
    assert "0 message(s)" in (await run(db_url, since="2999-01-01"))[1]
    code, text = await run(db_url, contains="FL1001")         # the appointment's filler id
    assert "3 message(s) (accepted 1, duplicate 1, rejected 1)" in text
    assert "0 message(s)" in (await run(db_url, contains="FL9999"))[1]
    code, text = await run(db_url, limit=2)
    assert len(text.splitlines()) == 2 + 2 + 1 and text.endswith(
        "(newest 2 of 5; --limit, --since or a filter for others)")


async def test_shows_one_row_with_its_message_and_writes_its_bytes(journaled, db_url: str) -> None:
    _, _, rows = journaled
    code, text = await run(db_url, rows[0]["id"])
    assert code == 0 and isinstance(text, str)
    assert f"journal row {rows[0]['id']}" in text
    assert "outcome, ACK    rejected  AE" in text and "error           204 " in text
    segments = [line.strip() for line in text.splitlines() if line.startswith("    ")]
    assert [s[:3] for s in segments] == [s[:3] for s in _message(FILES[0]).decode().split("\r") if s]
    code, raw = await run(db_url, rows[0]["id"], raw=True)
    assert code == 0 and raw == rows[0]["raw"] == _message(FILES[0])
    code, text = await run(db_url, rows[2]["id"])            # not HL7: shown as received
    assert "outcome, ACK    rejected  AR" in text


async def test_a_rejected_message_sent_again_from_the_journal_is_processed_anew(
        journaled, db_url: str) -> None:
    port, _, rows = journaled
    _, raw = await run(db_url, rows[0]["id"], raw=True)      # the S13 before its S12: AE 204
    assert isinstance(raw, bytes)
    client = await AsyncMllpClient.connect("127.0.0.1", port)
    try:
        assert msa(await client.request(raw))[:2] == ["MSA", "AA"]   # its booking exists now
    finally:
        await client.close()
    after = await _rows(db_url)
    assert (after[-1]["control_id"], after[-1]["outcome"]) == (rows[0]["control_id"], "accepted")


async def test_a_pruned_message_and_an_unknown_row(journaled, db_url: str) -> None:
    _, _, rows = journaled
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("UPDATE hl7_messages SET raw = ''::bytea WHERE id = $1", rows[1]["id"])
    finally:
        await conn.close()
    code, text = await run(db_url, rows[1]["id"])
    assert code == 0 and "the message's bytes were pruned" in text and "PID" not in text
    assert await run(db_url, 10_000_000) == (1, "journal: no row 10000000")


async def test_refuses_bad_arguments_and_an_unreachable_database(db_url: str) -> None:
    code, text = await run(db_url, outcomes=["lost"])
    assert code == 2 and "unknown outcome lost" in str(text) and "rejected" in str(text)
    code, text = await run(db_url, since="yesterday")
    assert code == 2 and "use 30m, 24h, 7d or an ISO 8601 date/time" in str(text)
    assert (await run(db_url, raw=True))[0] == 2
    assert (await run(db_url, limit=0))[0] == 2
    code, text = await run("postgresql://radsched@127.0.0.1:1/none")
    assert code == 1 and str(text).startswith("journal: database cannot be used")


def test_since_takes_spans_and_iso_times() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert since_time("30m", now) == now - timedelta(minutes=30)
    assert since_time("24h", now) == now - timedelta(hours=24)
    assert since_time("7d", now) == now - timedelta(days=7)
    assert since_time("2026-11-20", now) == datetime(2026, 11, 20, tzinfo=UTC)
    assert since_time("2026-11-20T08:00+01:00", now) == datetime(2026, 11, 20, 7, tzinfo=UTC)
    with pytest.raises(ValueError, match="--since '1 week'"):
        since_time("1 week", now)


async def test_the_cli_command_lists_and_writes_raw_bytes(
        journaled, db_url: str, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    _, _, rows = journaled
    config = tmp_path / "engine.yaml"
    write_channel(tmp_path / "cli-channels", "sched", "listen: 127.0.0.1:0\npipeline: [parse]\n")
    config.write_text(f"database:\n  url: '{db_url}'\nchannels_dir: {tmp_path / 'cli-channels'}\n")
    assert await _cli(["journal", "--config", str(config), "--outcome", "rejected"]) == 0
    assert b"3 message(s) (rejected 3)" in capsysbinary.readouterr().out
    assert await _cli(["journal", "--config", str(config), str(rows[0]["id"]), "--raw"]) == 0
    assert capsysbinary.readouterr().out == rows[0]["raw"]
    assert await _cli(["journal", "--config", str(config), "--since", "soon"]) == 2
    assert b"--since 'soon'" in capsysbinary.readouterr().err


async def _cli(argv: list[str]) -> int:
    return await asyncio.to_thread(cli.main, argv)    # the command runs its own event loop
