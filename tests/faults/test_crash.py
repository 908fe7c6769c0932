"""SIGKILL mid-stream, then restart: no acknowledged message lost, none applied twice.

The engine runs as a real process over mutual TLS with the whole pipeline (conflict check and
patient SMS through a fake Twilio included). Several connections stream numbered bookings; once
enough have been acknowledged the engine is killed with SIGKILL and started again on the same
database. Every message that got an AA must be journaled as accepted exactly once with its
appointment stored once; the sender then resends what was not acknowledged (and, as a sender
retrying after a lost ACK would, some that were), every answer is AA, and the set is complete
with no duplicates. Each patient gets exactly one text, the kill notwithstanding.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from pathlib import Path

from radsched_engine.store import EmbeddedPostgres, database_url
from tests.fakes.fake_twilio import FakeTwilio
from tests.fakes.fixtures import twilio_fake
from tests.notify.messages import local_start, siu
from tests.tls.certs import make_pki
from tests.tls.test_tls import client_context

from .engine_process import EngineProcess, free_port, until
from .streams import Streamer, fetch, journal, resend

__all__ = ["twilio_fake"]

CONNECTIONS = 4
MESSAGES = 240
KILL_AFTER = 80            # acknowledged messages before the SIGKILL


def bookings(count: int) -> dict[str, bytes]:
    """Numbered S12 bookings: own filler id, patient and cell phone each; half-hour slots."""
    first = local_start(days=7, hour=7)
    out = {}
    for n in range(count):
        cid = f"CRASH-{n:04d}"
        out[cid] = siu("S12", cid, filler=f"CF{n}", mrn=f"CMRN{n}", phones=f"^PRN^CP^^1^617^200{n:04d}",
                       start=first + timedelta(minutes=30 * n))
    return out


def phone(n: int) -> str:
    return f"+1617200{n:04d}"


async def test_sigkill_mid_stream_over_mtls_with_notify(tmp_path: Path, db_url: str,
                                                        twilio_fake: FakeTwilio) -> None:
    pki = make_pki(tmp_path / "pki")
    port = free_port()
    engine = EngineProcess(tmp_path, {"scheduling": f"""
listen: 127.0.0.1:{port}
timezone: America/New_York
tls: {{cert: {pki.server.cert}, key: {pki.server.key}, client_ca: {pki.ca.cert}}}
pipeline:
  - parse
  - validate
  - conflict_check
  - persist
  - notify
"""}, database_url=db_url, env={**twilio_fake.env(), "RADSCHED_SMS_RATE": "1000",
                                "RADSCHED_OUTBOX_POLL_SECONDS": "0.05",
                                "RADSCHED_OUTBOX_LEASE_SECONDS": "2"})
    messages = bookings(MESSAGES)
    tls = client_context(pki, pki.client)
    engine.start()
    try:
        await engine.ready()
        stream = Streamer(port, messages, CONNECTIONS, ssl_context=tls)
        stream.start()

        async def enough() -> bool:
            return stream.tally.aa >= KILL_AFTER

        await until(enough, 120)
        engine.kill()
        first = await stream.finish()

        # Before the kill every answer was AA; the kill left some messages unanswered.
        assert set(first.codes()) == {"AA"}, first.codes()
        acked = first.accepted()
        assert KILL_AFTER <= len(acked) < MESSAGES
        in_doubt = set(messages) - acked
        rows = await journal(db_url, messages)
        assert all(rows[cid] == Counter(accepted=1) for cid in acked), \
            {cid: rows[cid] for cid in acked if rows[cid] != Counter(accepted=1)}
        assert all(rows[cid]["accepted"] <= 1 for cid in in_doubt)
        stored = await fetch(db_url, "SELECT filler_id, count(*) AS n FROM appointments GROUP BY filler_id")
        per_filler = {r["filler_id"]: r["n"] for r in stored}
        assert all(per_filler.get(f"CF{int(cid[6:])}") == 1 for cid in acked)
        assert set(per_filler.values()) <= {1}

        # Restart on the same database; resend the unacknowledged and twenty acknowledged ones.
        engine.start()
        await engine.ready()
        again = sorted(in_doubt) + sorted(acked)[:20]
        second = await resend(port, messages, again, ssl_context=tls)
        assert {cid: [c for c, _ in a] for cid, a in second.answers.items()} == {cid: ["AA"] for cid in again}

        rows = await journal(db_url, messages)
        assert all(rows[cid]["accepted"] == 1 for cid in messages), \
            {cid: rows[cid] for cid in messages if rows[cid]["accepted"] != 1}
        assert all(rows[cid]["duplicate"] == 1 for cid in sorted(acked)[:20])
        assert not any(rows[cid]["retry"] or rows[cid]["error"] or rows[cid]["rejected"] for cid in messages)
        stored = await fetch(db_url, "SELECT filler_id FROM appointments")
        assert sorted(r["filler_id"] for r in stored) == sorted(f"CF{n}" for n in range(MESSAGES))

        # One text per booking, queued once, sent once, even for those in flight at the kill.
        async def all_sent() -> bool:
            rows = await fetch(db_url, "SELECT count(*) AS n FROM outbox WHERE kind = 'sms' "
                                       "AND status = 'sent'")
            return rows[0]["n"] == MESSAGES

        await until(all_sent, 90, 0.2)
        queued = await fetch(db_url, "SELECT appointment_id FROM outbox WHERE kind = 'sms'")
        assert len(queued) == MESSAGES and len({r["appointment_id"] for r in queued}) == MESSAGES
        assert await fetch(db_url, "SELECT 1 FROM outbox_intake") == []
        texts = Counter(form["To"] for form in twilio_fake.sent)
        assert texts == Counter({phone(n): 1 for n in range(MESSAGES)})

        engine.terminate()
        assert engine.wait(60) == 0, engine.log_text()[-3000:]
    finally:
        engine.stop()


async def test_sigkill_with_embedded_storage_then_restart(pg_data_dir: Path) -> None:
    """The default deployment: the engine's own PostgreSQL under its data directory. Killed, the
    engine leaves that server running; the restarted engine adopts it and loses nothing."""
    port = free_port()
    engine = EngineProcess(pg_data_dir, {"scheduling": f"""
listen: 127.0.0.1:{port}
pipeline: [parse, validate, persist]
"""}, data_dir=pg_data_dir / "var")
    messages = bookings(150)
    engine.start()
    url = ""
    try:
        await engine.ready()
        stream = Streamer(port, messages, 3)
        stream.start()

        async def enough() -> bool:
            return stream.tally.aa >= 40

        await until(enough, 120)
        engine.kill()
        first = await stream.finish()
        assert set(first.codes()) == {"AA"} and len(first.accepted()) < len(messages)
        url = database_url(pg_data_dir / "var")              # the server outlived the engine
        rows = await journal(url, messages)
        assert all(rows[cid] == Counter(accepted=1) for cid in first.accepted())

        engine.start()
        await engine.ready()
        assert engine.events("embedded_postgres_found")
        missing = sorted(set(messages) - first.accepted())
        second = await resend(port, messages, missing)
        assert set(second.codes()) == {"AA"}
        rows = await journal(url, messages)
        assert all(rows[cid]["accepted"] == 1 for cid in messages)
        stored = await fetch(url, "SELECT filler_id FROM appointments")
        assert sorted(r["filler_id"] for r in stored) == sorted(f"CF{n}" for n in range(len(messages)))
        engine.terminate()
        assert engine.wait(60) == 0
    finally:
        engine.stop()
        if url or (pg_data_dir / "var" / "pg").exists():
            await asyncio.to_thread(stop_embedded, pg_data_dir / "var")


def stop_embedded(data_dir: Path) -> None:
    """Stop a server under ``data_dir`` that no engine will stop (it outlived the one that started it)."""
    import pgserver

    server = EmbeddedPostgres(data_dir)
    if server.pgdata.exists():
        server.start()
        pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata,
                        user=server._server.system_user, timeout=60)
