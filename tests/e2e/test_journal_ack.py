"""The journal records exactly the ACK code each message was answered with."""

from __future__ import annotations

import asyncpg

from radsched_engine.cli import split_messages
from tests.e2e.harness import PERSIST_CHANNEL, SAMPLES, running_engine, write_channel
from tests.mllp_client import AsyncMllpClient, msa

FILES = ["siu_s12_new_ct.hl7", "siu_s12_enhanced_ack_xr.hl7", "malformed/no_msh.hl7",
         "malformed/adt_wrong_type.hl7", "malformed/siu_s14_unknown_appointment.hl7",
         "siu_s12_new_ct.hl7"]          # the last one is a redelivery


async def test_journal_ack_code_is_the_code_sent(tmp_path, db_url):
    write_channel(tmp_path / "channels", "sched", PERSIST_CHANNEL)
    async with running_engine(tmp_path / "channels", tmp_path / "data", database_url=db_url) as engine:
        client = await AsyncMllpClient.connect("127.0.0.1", engine.servers[0].port)
        sent = []
        for name in FILES:
            reply = await client.request(split_messages((SAMPLES / name).read_bytes())[0])
            sent.append(msa(reply)[1])
        await client.close()
    assert sent == ["AA", "CA", "AR", "AR", "AE", "AA"]
    conn = await asyncpg.connect(db_url)
    try:
        journaled = [r["ack_code"] for r in await conn.fetch("SELECT ack_code FROM hl7_messages ORDER BY id")]
    finally:
        await conn.close()
    assert journaled == sent
