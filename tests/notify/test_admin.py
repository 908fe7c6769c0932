"""``radsched-engine outbox``: listing waiting and dead rows (no payloads), re-queueing a dead one."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest

from radsched_engine import cli
from radsched_engine.notify.admin import run
from radsched_engine.store import Store
from tests.outbox.helpers import row

from .helpers import TO, queue_sms

BODY = "Clinic: your CT is booked. Reply STOP to opt out."


async def set_row(db_url: str, rid: int, **values: object) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        for column, value in values.items():
            if isinstance(value, dict):
                value = json.dumps(value)
                await conn.execute(f"UPDATE outbox SET {column} = $2::jsonb WHERE id = $1", rid, value)
            else:
                await conn.execute(f"UPDATE outbox SET {column} = $2 WHERE id = $1", rid, value)
    finally:
        await conn.close()


@pytest.fixture
async def rows(store: Store, db_url: str) -> dict[str, int]:
    waiting = await queue_sms(store, "k1", BODY)
    dead = await queue_sms(store, "k2", BODY)
    doubtful = await queue_sms(store, "k3", BODY)
    await set_row(db_url, dead, status="dead", attempts=10,
                  last_error="gave up after 10 attempts: twilio http 503 code 20503: twilio unavailable")
    await set_row(db_url, doubtful, status="dead", attempts=10, result={"in_doubt": True},
                  last_error="gave up after 10 attempts: no answer within 10 s")
    return {"waiting": waiting, "dead": dead, "doubtful": doubtful}


async def test_lists_waiting_rows_without_patient_data(rows: dict[str, int], db_url: str) -> None:
    code, text = await run(db_url)
    assert code == 0
    assert "sms dead 2" in text and "sms pending 1" in text
    assert f"{rows['waiting']:>8}  sms" in text and f"{rows['dead']:>8}  sms" not in text
    assert TO not in text and BODY not in text


async def test_lists_dead_rows_with_their_reason(rows: dict[str, int], db_url: str) -> None:
    code, text = await run(db_url, dead=True)
    assert code == 0
    assert f"{rows['dead']:>8}  sms" in text and "twilio unavailable" in text
    assert f"{rows['waiting']:>8}  sms" not in text


async def test_retry_puts_a_dead_row_back_and_in_doubt_ones_through_reconcile(
        rows: dict[str, int], db_url: str) -> None:
    assert (await run(db_url, retry=rows["dead"]))[0] == 0
    got = await row(db_url, rows["dead"])
    assert (got["status"], got["attempts"]) == ("retry", 0)
    assert got["last_error"].startswith("retried by operator: gave up")
    code, text = await run(db_url, retry=rows["doubtful"])
    assert code == 0 and "after checking" in text
    got = await row(db_url, rows["doubtful"])
    assert got["status"] == "sending" and got["locked_until"] is not None
    assert (await run(db_url, retry=rows["waiting"]))[0] == 1    # not dead: nothing changes
    assert (await row(db_url, rows["waiting"]))["status"] == "pending"


async def test_the_cli_command_uses_the_configured_database(
        rows: dict[str, int], db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "engine.yaml"
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "scheduling.yaml").write_text("listen: 127.0.0.1:0\npipeline: [parse]\n")
    config.write_text(f"database:\n  url: '{db_url}'\nchannels_dir: {tmp_path / 'channels'}\n")
    assert await _cli(["outbox", "--config", str(config), "--dead"]) == 0
    assert f"{rows['dead']:>8}  sms" in capsys.readouterr().out
    assert await _cli(["outbox", "--config", str(config), "--retry", str(rows["waiting"])]) == 1
    assert "not dead-lettered" in capsys.readouterr().err


async def _cli(argv: list[str]) -> int:
    import asyncio

    return await asyncio.to_thread(cli.main, argv)    # the command runs its own event loop


async def test_rows_still_in_the_intake_are_counted_and_listed(db_url: str) -> None:
    """Texts queued with their messages and not yet moved into the outbox by a worker."""
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute(
            "SELECT radsched_enqueue($1::jsonb)",
            json.dumps([{"kind": "sms", "dedupe_key": f"i{n}", "payload": {"event": "S12", "to": TO}}
                        for n in range(3)]))
    finally:
        await conn.close()
    code, text = await run(db_url)
    assert code == 0 and "sms intake 3" in text
    def listed(text: str) -> list[list[str]]:
        return [line.split()[:4] for line in text.splitlines()[1:] if " intake " in line]

    assert listed(text) == [["-", "sms", "S12", "intake"]] * 3
    assert TO not in text
    assert len(listed((await run(db_url, limit=2))[1])) == 2
