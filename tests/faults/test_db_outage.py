"""PostgreSQL stopped and restarted mid-stream, through the engine over MLLP, without restarting it.

The engine (in-process) uses a PostgreSQL of the test's own (embedded, under ``pg_data_dir``)
by URL, so the test can take it away: first a clean stop (``pg_ctl -m fast``), then a crash
(``-m immediate``: no checkpoint, crash recovery on restart). Three senders keep sending
numbered bookings and resend a message answered AR until it is accepted, as an HL7 interface
does. While the database is down the answers are AR 207 (or a closed connection), never AA;
once it is back the same engine answers AA again; at the end every message is stored once,
and its patient texted once: the outbox worker came through both outages without a restart.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from radsched_engine.store import EmbeddedPostgres
from tests.e2e.harness import running_engine, scrape, write_channel
from tests.fakes.fake_twilio import FakeTwilio
from tests.fakes.fixtures import twilio_fake
from tests.notify.messages import local_start, siu

from .engine_process import until
from .streams import RetryingSender, Seen, fetch, journal

__all__ = ["twilio_fake"]

CONNECTIONS = 3
SUPPLY = 1200              # more than the test gets through; the senders are stopped at the end


class Phases:
    """What the test is doing to the database: ('up'|'stopping'|'down'|'starting', outage no.)."""

    def __init__(self) -> None:
        self.now: tuple[str, int] = ("up", 0)

    def __call__(self) -> tuple[str, int]:
        return self.now


def stop_immediately(server: EmbeddedPostgres) -> None:
    """A PostgreSQL crash: immediate shutdown, no checkpoint (the restart runs crash recovery)."""
    import pgserver

    pgserver.pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=server.pgdata,
                    user=server._server.system_user, timeout=60)


@pytest.mark.slow
async def test_database_stopped_and_crashed_mid_stream(tmp_path: Path, pg_data_dir: Path,
                                                       twilio_fake: FakeTwilio) -> None:
    server = EmbeddedPostgres(pg_data_dir)
    url = await asyncio.to_thread(server.start)
    channels = tmp_path / "channels"
    write_channel(channels, "scheduling", "listen: 127.0.0.1:0\ntimezone: America/New_York\n"
                                          "pipeline: [parse, validate, persist, notify]\n")
    first = local_start(days=3, hour=6)
    messages = {f"DB-{n:05d}": siu("S12", f"DB-{n:05d}", filler=f"DF{n}", mrn=f"DMRN{n}",
                                   phones=f"^PRN^CP^^1^617^201{n:04d}",
                                   start=first + timedelta(minutes=20 * n)) for n in range(SUPPLY)}
    env = {**twilio_fake.env(), "RADSCHED_SMS_RATE": "1000", "RADSCHED_OUTBOX_POLL_SECONDS": "0.05",
           "RADSCHED_OUTBOX_LEASE_SECONDS": "2"}
    phases = Phases()
    try:
        async with running_engine(channels, tmp_path / "data", database_url=url, env=env) as engine:
            port, http = engine.servers[0].port, engine.http.port
            senders = RetryingSender(port, messages, CONNECTIONS, phases, pause=0.01)
            senders.start()

            async def accepted(count: int) -> None:
                mark = len(senders.done)

                async def enough() -> bool:
                    assert len(senders.done) < SUPPLY - 100 and not senders.count("AE"), senders.seen[-3:]
                    return len(senders.done) >= mark + count
                await until(enough, 60)

            async def readiness(status: int) -> None:
                async def check() -> bool:
                    return (await scrape(http, "/readyz"))[0] == status
                await until(check, 60)

            await accepted(30)
            for outage, stop in enumerate((server.stop, lambda: stop_immediately(server)), start=1):
                phases.now = ("stopping", outage)
                await asyncio.to_thread(stop)
                phases.now = ("down", outage)
                mark = len(senders.seen)

                async def every_sender_refused(mark: int = mark) -> bool:
                    refused = {s.connection for s in senders.seen[mark:] if s.code != "AA"}
                    return len(refused) == CONNECTIONS
                await until(every_sender_refused, 60)
                await readiness(503)
                phases.now = ("starting", outage)
                assert await asyncio.to_thread(server.start) == url
                phases.now = ("up", outage)
                await accepted(30)                         # the same engine, no restart
                await readiness(200)
            await senders.finish()
            _, metrics = await scrape(http)

            async def texted() -> bool:
                rows = await fetch(url, "SELECT count(*) FILTER (WHERE status = 'sent') AS sent, "
                                        "count(*) AS queued FROM outbox WHERE kind = 'sms'")
                return rows[0]["sent"] == rows[0]["queued"] == len(senders.done)
            await until(texted, 90, 0.1)
            texts = Counter(form["To"] for form in twilio_fake.sent)
            assert texts == Counter({f"+1617201{int(cid[3:]):04d}": 1 for cid in senders.done})
    finally:
        await asyncio.to_thread(server.stop)

    # While down: AR 207 or a closed connection, and never an AA once a sender had been refused.
    refusals = [s for s in senders.seen if s.code != "AA"]
    assert refusals and all((s.code, s.error) in {("AR", "207"), ("closed", "")} for s in refusals), \
        Counter((s.code, s.error) for s in refusals)
    assert {s.phase for s in refusals if s.code == "AR"} >= {("down", 1), ("down", 2)}
    for connection in range(CONNECTIONS):
        mine: list[Seen] = [s for s in senders.seen if s.connection == connection]
        for i, answer in enumerate(mine):
            if answer.code != "AA" and answer.phase[0] == "down":
                later = [s for s in mine[i:] if s.phase == answer.phase]
                assert all(s.code != "AA" for s in later), later
    assert "radsched_commit_failures_total{channel=\"scheduling\"}" in metrics

    # Nothing lost, nothing twice: every message sent ends accepted, journaled once as such.
    sent = {s.control_id for s in senders.seen}
    assert set(senders.done) == sent and len(senders.done) == len(sent)
    await asyncio.to_thread(server.start)
    try:
        rows = await journal(url, sent)
        assert all(rows[cid]["accepted"] == 1 for cid in sent), \
            {cid: rows[cid] for cid in sent if rows[cid]["accepted"] != 1}
        stored = await fetch(url, "SELECT filler_id, count(*) AS n FROM appointments GROUP BY filler_id")
        assert {r["filler_id"]: r["n"] for r in stored} == {f"DF{int(cid[3:])}": 1 for cid in sent}
    finally:
        await asyncio.to_thread(server.stop)
