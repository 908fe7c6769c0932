"""Group commit end to end: many MLLP connections through the full durable channel, real PostgreSQL.

Each connection keeps one message in flight, so its answers come in order and its messages
commit in order, whatever the grouping; a rejected message among them spoils nothing; two
bookings of one room committed in the same batch still see each other.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import asyncpg

from tests.conflicts.helpers import channel_text, siu
from tests.e2e.harness import running_engine, scrape, write_channel
from tests.mllp_client import AsyncMllpClient, msa

FULL = channel_text("  - parse\n  - validate\n  - conflict_check\n  - persist\n  - notify\n")
CONNECTIONS = 16
PER_CONNECTION = 12


def _batches(metrics: str) -> float:
    found = re.search(r'radsched_store_duration_seconds_count\{operation="batch"\} ([0-9.e+]+)', metrics)
    return float(found.group(1)) if found else 0.0


def _message(c: int, i: int) -> tuple[bytes, str]:
    """Connection ``c``'s ``i``-th message and the ACK code it should get."""
    control = f"C{c}-{i}"
    if i == 5 and c % 4 == 0:               # an update of an appointment never booked: AE 204
        return siu("S13", control, f"NEVER{c}", start="20270310100000", room=f"R{c}"), "AE"
    day = 10 + i // 8
    start = f"202703{day:02d}{8 + i % 8:02d}0000"
    return siu("S12", control, f"A{c}-{i}", start=start, mrn=f"M{c}-{i}", room=f"R{c}",
               staff=(f"T{c}", "TECH")), "AA"


async def test_many_connections_keep_their_order_and_a_rejected_message_spoils_nothing(
        tmp_path: Path, db_url: str) -> None:
    channels = tmp_path / "channels"
    write_channel(channels, "scheduling", FULL)
    async with running_engine(channels, tmp_path / "data", database_url=db_url) as engine:
        port = engine.servers[0].port
        before = _batches((await scrape(engine.http.port))[1])

        async def connection(c: int) -> list[tuple[str, str, str]]:
            client = await AsyncMllpClient.connect("127.0.0.1", port)
            answers = []
            try:
                for i in range(PER_CONNECTION):
                    raw, expected = _message(c, i)
                    reply = await client.request(raw)
                    assert reply is not None
                    answers.append((f"C{c}-{i}", msa(reply)[2], msa(reply)[1] + "/" + expected))
            finally:
                await client.close()
            return answers

        # Two connections book one room at one time: whichever batch they land in, the second
        # is checked against the first (same transaction or committed before).
        results = await asyncio.gather(*(connection(c) for c in range(CONNECTIONS)))
        clash = await asyncio.gather(*(
            _book(port, f"X{n}", siu("S12", f"X{n}", f"CLASH{n}", start="20270401090000",
                                     mrn=f"XM{n}", room="SHARED")) for n in range(2)))
        after = _batches((await scrape(engine.http.port))[1])

    for c, answers in enumerate(results):
        assert [a[0] for a in answers] == [a[1] for a in answers], f"connection {c}: MSA-2 out of order"
        assert all(a[2].split("/")[0] == a[2].split("/")[1] for a in answers), answers
    assert clash == ["AA", "AA"]
    assert after > before                           # messages were committed in batches

    conn = await asyncpg.connect(db_url)
    try:
        journal = {r["control_id"]: (r["id"], r["outcome"]) for r in await conn.fetch(
            "SELECT id, control_id, outcome FROM hl7_messages")}
        booked = await conn.fetchval("SELECT count(*) FROM appointments WHERE filler_id LIKE 'A%'")
        texts = await conn.fetchval(      # queued: in the outbox or still in its intake
            "SELECT (SELECT count(*) FROM outbox WHERE kind = 'sms') "
            "+ (SELECT count(*) FROM outbox_intake WHERE kind = 'sms')")
        flagged = await conn.fetch("SELECT filler_id, conflicts FROM appointments "
                                   "WHERE filler_id LIKE 'CLASH%' ORDER BY id")
    finally:
        await conn.close()
    rejected = CONNECTIONS // 4
    assert len(journal) == CONNECTIONS * PER_CONNECTION + 2
    for c in range(CONNECTIONS):
        ids = [journal[f"C{c}-{i}"][0] for i in range(PER_CONNECTION)]
        assert ids == sorted(ids), f"connection {c} committed out of order"
    assert sum(1 for _, outcome in journal.values() if outcome == "rejected") == rejected
    assert booked == CONNECTIONS * PER_CONNECTION - rejected
    assert texts == booked + 2
    second = flagged[1]["conflicts"]
    assert "CLASH0" in second or "CLASH1" in second    # the later booking names the earlier one


async def _book(port: int, control: str, raw: bytes) -> str:
    client = await AsyncMllpClient.connect("127.0.0.1", port)
    try:
        reply = await client.request(raw)
        assert reply is not None and msa(reply)[2] == control
        return msa(reply)[1]
    finally:
        await client.close()
