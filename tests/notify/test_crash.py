"""The engine as a real process: killed (SIGKILL) after Twilio accepted a text, before the row was
updated, it sends no second text; and its log carries no patient data.

The engine runs as a real process. The fake Twilio holds the create request until the test has
locked the outbox row (already committed as ``sending``), so that once Twilio accepts, the
engine's result update waits on the lock; the test then kills the engine (and its database
sessions, as a dead process's connections would be, so the waiting update never lands). A
restarted worker finds the row ``sending`` with an expired lease, asks Twilio (``find_sent``) and records the
text as sent without sending it again.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import asyncpg

from radsched_engine.store import Store
from tests.e2e.harness import write_channel
from tests.fakes.fake_twilio import FakeTwilio
from tests.mllp_client import AsyncMllpClient, msa
from tests.outbox.helpers import Clock, row

from .helpers import TO, sms_worker
from .messages import siu


class GatedTwilio(FakeTwilio):
    """Forced answers wait for ``gate`` (instead of a delay); ``held`` is set while one waits."""

    def __init__(self) -> None:
        super().__init__()
        self.held = threading.Event()
        self.gate = threading.Event()

    def stall(self, seconds: float) -> None:
        self.held.set()
        self.gate.wait(60)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def until(predicate, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)


async def test_killed_after_twilio_accepted_sends_no_second_text(
        tmp_path: Path, db_url: str, store: Store) -> None:
    fake = GatedTwilio()
    fake.start()
    fake.force(201, delay=0.01)                     # the first create waits at the gate
    port = free_port()
    channels = tmp_path / "channels"
    write_channel(channels, "scheduling", f"""
listen: 127.0.0.1:{port}
timezone: America/New_York
pipeline:
  - parse
  - validate
  - persist
  - notify
""")
    env = {**os.environ, **fake.env(), "RADSCHED_CHANNELS_DIR": str(channels),
           "RADSCHED_DATA_DIR": str(tmp_path / "data"), "RADSCHED_METRICS_LISTEN": "127.0.0.1:0",
           "RADSCHED_DATABASE_URL": db_url, "RADSCHED_OUTBOX_POLL_SECONDS": "0.05",
           "RADSCHED_OUTBOX_LEASE_SECONDS": "60"}
    log = open(tmp_path / "engine.log", "wb")  # noqa: SIM115
    engine = subprocess.Popen([sys.executable, "-m", "radsched_engine.cli", "run"], cwd=tmp_path,
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    locker = await asyncpg.connect(db_url)
    try:
        async def listening() -> bool:
            assert engine.poll() is None, (tmp_path / "engine.log").read_text()
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                return False
            writer.close()
            return True

        await until(listening, 60)
        client = await AsyncMllpClient.connect("127.0.0.1", port)
        reply = await client.request(siu("S12", "CRASH-1"))
        client.writer.close()
        assert msa(reply)[1] == "AA"
        assert await asyncio.to_thread(fake.held.wait, 30), "the engine never tried to send"
        # The row is committed as 'sending' before the call; hold it so the result cannot land.
        tx = locker.transaction()
        await tx.start()
        locked = await locker.fetch("SELECT id FROM outbox WHERE status = 'sending' FOR UPDATE")
        assert len(locked) == 1
        fake.gate.set()                              # Twilio accepts and answers

        async def recording_blocked() -> bool:
            return bool(await store.pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'radsched-outbox' "
                "AND wait_event_type = 'Lock'"))

        await until(recording_blocked)
        assert len(fake.sent) == 1
        engine.send_signal(signal.SIGKILL)
        engine.wait(30)
        # Its connections die with it: the update it was waiting to make never happens.
        await store.pool.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE application_name = 'radsched-outbox'")
        await tx.rollback()
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait(30)
        log.close()
        await locker.close()
    rid = locked[0]["id"]
    got = await row(db_url, rid)
    assert (got["status"], got["attempts"]) == ("sending", 1)

    # Restart: the lease has run out by the restarted worker's clock.
    clock = Clock()
    clock.advance(3600)
    try:
        worker, _ = sms_worker(store, fake.env(), clock)
        try:
            assert await worker.drain() == 1
        finally:
            await worker.stop()
        got = await row(db_url, rid)
        result = json.loads(got["result"])
        assert (got["status"], result["reconciled"], result["sid"]) == ("sent", True, fake.messages[0]["sid"])
        assert len(fake.creates()) == 1 and [f["To"] for f in fake.sent] == [TO]
    finally:
        fake.close()


async def test_engine_process_log_carries_no_patient_data(tmp_path: Path, db_url: str) -> None:
    fake = FakeTwilio()
    fake.start()
    port = free_port()
    channels = tmp_path / "channels"
    write_channel(channels, "scheduling", f"""
listen: 127.0.0.1:{port}
timezone: America/New_York
pipeline: [parse, validate, persist, notify]
""")
    env = {**os.environ, **fake.env(), "RADSCHED_CHANNELS_DIR": str(channels),
           "RADSCHED_DATA_DIR": str(tmp_path / "data"), "RADSCHED_METRICS_LISTEN": "127.0.0.1:0",
           "RADSCHED_DATABASE_URL": db_url, "RADSCHED_OUTBOX_POLL_SECONDS": "0.05"}
    log_path = tmp_path / "engine.log"
    config = tmp_path / "engine.yaml"
    config.write_text("log: {format: json, level: debug}\n")
    with open(log_path, "wb") as log:
        command = [sys.executable, "-m", "radsched_engine.cli", "run", "--config", str(config)]
        engine = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            async def listening() -> bool:
                assert engine.poll() is None, log_path.read_text()
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    return False
                writer.close()
                return True

            async def texts(n: int):
                async def sent() -> bool:
                    return len(fake.sent) >= n
                return sent

            await until(listening, 60)
            client = await AsyncMllpClient.connect("127.0.0.1", port)
            assert msa(await client.request(siu("S12", "LOG-1")))[1] == "AA"
            await until(await texts(1))
            assert msa(await client.request(siu("S15", "LOG-2")))[1] == "AA"
            await until(await texts(2))
            client.writer.close()
            engine.send_signal(signal.SIGTERM)
            engine.wait(60)
        finally:
            if engine.poll() is None:
                engine.kill()
                engine.wait(30)
            fake.close()
    text = log_path.read_text()
    assert text.count('"event": "outbox_delivery"') == 2 and '"result": "sent"' in text
    for phi in ("5550123", "5550100", "TESTPATIENT", "MRN1", "19800415", "Example St",
                "is booked for", "is cancelled"):
        assert phi not in text, phi
