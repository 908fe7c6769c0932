"""MLLP to SMS end to end: the in-process engine, real PostgreSQL, the twilio SDK against the fake Twilio."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import asyncpg

from tests.e2e.harness import running_engine, scrape, write_channel
from tests.fakes.fake_twilio import FakeTwilio
from tests.mllp_client import AsyncMllpClient, msa

from .messages import FACILITY, local_start, siu

PUBLIC = "https://rad.example.org/twilio/status"
CHANNEL = """
listen: ${RADSCHED_MLLP_LISTEN}
timezone: America/New_York
pipeline:
  - parse
  - validate
  - persist
  - notify: {clinic: City Radiology}
"""


async def wait_for(predicate, what: str, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_s12_then_s15_over_mllp_text_the_patient(tmp_path: Path, db_url: str,
                                                       twilio_fake: FakeTwilio) -> None:
    channels = tmp_path / "channels"
    write_channel(channels, "scheduling", CHANNEL)
    start = local_start(days=12, hour=14, minute=45)
    env = {**twilio_fake.env(), "RADSCHED_OUTBOX_POLL_SECONDS": "0.05",
           "RADSCHED_SMS_STATUS_CALLBACK_URL": PUBLIC}
    await _run(channels, tmp_path, db_url, env, start, twilio_fake)


async def _run(channels: Path, tmp_path: Path, db_url: str, env: dict[str, str], start, twilio_fake) -> None:
    async with running_engine(channels, tmp_path / "data", database_url=db_url, env=env) as engine:
        client = await AsyncMllpClient.connect("127.0.0.1", engine.servers[0].port)
        try:
            reply = await client.request(siu("S12", "MSG-1", start=start))
            assert msa(reply)[1] == "AA"
            await wait_for(lambda: len(twilio_fake.sent) == 1, "the booking text")
            reply = await client.request(siu("S15", "MSG-2", start=start))
            assert msa(reply)[1] == "AA"
            await wait_for(lambda: len(twilio_fake.sent) == 2, "the cancellation text")
            # Twilio reports delivery on the engine's HTTP port.
            form = {"MessageSid": twilio_fake.messages[0]["sid"], "MessageStatus": "delivered"}
            url = f"http://127.0.0.1:{engine.http.port}/twilio/status"
            async with aiohttp.ClientSession() as session:
                signed = {"X-Twilio-Signature": twilio_fake.sign(PUBLIC, form)}
                async with session.post(url, data=form, headers=signed) as answer:
                    assert answer.status == 204
                async with session.post(url, data=form, headers={"X-Twilio-Signature": "forged"}) as answer:
                    assert answer.status == 403
            status, metrics = await scrape(engine.http.port)
            assert status == 200
            assert 'radsched_outbox_results_total{kind="sms",result="sent"}' in metrics
            assert 'radsched_outbox_send_duration_seconds_count{kind="sms"}' in metrics
            assert 'radsched_outbox_depth{kind="sms"}' in metrics
        finally:
            client.writer.close()
    booked, cancelled = twilio_fake.sent
    when = start.astimezone(FACILITY).strftime("%a %d %b 14:45")
    assert booked["To"] == "+16175550123" and cancelled["To"] == "+16175550123"
    assert booked["From"] == twilio_fake.from_number and booked["StatusCallback"] == PUBLIC
    assert booked["Body"] == (f"City Radiology: your CT ABDOMEN AND PELVIS WITH CONTRAST is booked for "
                              f"{when} at CT Scanner 1. Reply STOP to opt out.")
    assert cancelled["Body"].startswith(f"City Radiology: your CT ABDOMEN AND PELVIS WITH CONTRAST on "
                                        f"{when} is cancelled.")
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch("SELECT status, result::text AS result, payload->>'event' AS event, "
                                "payload->>'profile' AS profile FROM outbox ORDER BY id")
        profiles = await conn.fetch("SELECT id, settings FROM notify_profiles")
    finally:
        await conn.close()
    assert [(r["status"], r["event"]) for r in rows] == [("sent", "S12"), ("sent", "S15")]
    # The rows named the channel's settings, stored once when the channel started.
    [profile] = profiles
    assert {r["profile"] for r in rows} == {profile["id"]}
    assert json.loads(profile["settings"])["clinic"] == "City Radiology"
    assert all('"sid": "SM' in r["result"] for r in rows)
    conn = await asyncpg.connect(db_url)
    try:
        assert await conn.fetchval("SELECT status FROM sms_delivery_status WHERE sid = $1",
                                   twilio_fake.messages[0]["sid"]) == "delivered"
    finally:
        await conn.close()
