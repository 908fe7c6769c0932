"""SIGTERM under load: stop accepting, finish and acknowledge what is in flight, exit 0.

The engine runs as a real process. To have a message certainly in flight when the signal
arrives, the test holds a row lock on an appointment and sends its reschedule: the engine's
transaction waits on the lock. Three other connections stream bookings meanwhile. After SIGTERM
new connections are refused while the engine waits for the blocked message; once the test lets
go of the lock that message commits, is answered AA, and the engine exits 0. Every message the
engine committed was answered, and every AA is in the database once. Run over plain TCP and
over mutual TLS (the last ACKs are flushed through TLS before the close).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from radsched_engine.mllp.framing import encode
from tests.mllp_client import AsyncMllpClient, msa
from tests.notify.messages import local_start, siu
from tests.tls.certs import make_pki
from tests.tls.test_tls import client_context

from .engine_process import EngineProcess, free_port, until
from .streams import Streamer, fetch, journal
from .test_crash import bookings


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "mtls"])
async def test_sigterm_during_load_drains(tmp_path: Path, db_url: str, tls: bool) -> None:
    port = free_port()
    ctx, tls_yaml = None, ""
    if tls:
        pki = make_pki(tmp_path / "pki")
        ctx = client_context(pki, pki.client)
        tls_yaml = f"tls: {{cert: {pki.server.cert}, key: {pki.server.key}, client_ca: {pki.ca.cert}}}"
    engine = EngineProcess(tmp_path, {"scheduling": f"""
listen: 127.0.0.1:{port}
timezone: America/New_York
{tls_yaml}
pipeline: [parse, validate, persist]
"""}, database_url=db_url, engine_yaml="database: {command_timeout: 60}\nshutdown_grace: 60\n")
    messages = bookings(600)
    moved = local_start(days=30, hour=15)
    locker = await asyncpg.connect(db_url)
    engine.start()
    try:
        await engine.ready()
        held = await AsyncMllpClient.connect("127.0.0.1", port, ssl=ctx,
                                             server_hostname="localhost" if ctx else None)
        assert msa(await held.request(siu("S12", "HOLD-1", filler="HELD", mrn="HMRN")))[1] == "AA"
        lock = locker.transaction()
        await lock.start()
        assert await locker.fetch("SELECT id FROM appointments WHERE filler_id = 'HELD' FOR UPDATE")

        stream = Streamer(port, messages, 3, ssl_context=ctx)
        stream.start()
        await held.send_raw(encode(siu("S13", "HOLD-2", filler="HELD", mrn="HMRN", start=moved)))

        async def blocked() -> bool:
            return bool(await locker.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'radsched-engine' "
                "AND wait_event_type = 'Lock'"))

        async def streaming() -> bool:
            return stream.tally.aa >= 30

        await until(blocked, 60)
        await until(streaming, 60)
        engine.terminate()

        async def refusing() -> bool:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                return True
            writer.close()
            return False

        await until(refusing, 60)
        first = await stream.finish()                  # the stream's connections were closed
        assert engine.proc is not None and engine.proc.poll() is None   # still waiting for HOLD-2
        await lock.rollback()
        reply = await held.read_reply(timeout=60)
        assert reply is not None and msa(reply)[1:3] == ["AA", "HOLD-2"]
        assert await held.closed_by_server(timeout=60)
        assert engine.wait(60) == 0, engine.log_text()[-3000:]
    finally:
        await locker.close()
        engine.stop()

    assert set(first.codes()) == {"AA"} and first.closed == 3
    acked = first.accepted()
    rows = await journal(db_url, stream.sent)
    committed = {cid for cid, outcomes in rows.items() if outcomes["accepted"]}
    assert committed == acked                          # committed <=> answered AA
    assert all(rows[cid]["accepted"] == 1 for cid in acked)
    held_row = await fetch(db_url, "SELECT datetime FROM appointments WHERE filler_id = 'HELD'")
    assert held_row[0]["datetime"] == moved
    stopping = [e["event"] for e in engine.events() if e.get("event", "").startswith("engine_")]
    assert stopping[-2:] == ["engine_stopping", "engine_stopped"]
