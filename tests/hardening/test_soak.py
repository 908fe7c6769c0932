"""A short soak: the engine's RSS must not grow with the number of messages it has handled.

The engine runs as a real process (``python -m radsched_engine.cli run``) on the durable
channel (parse → validate → conflict_check → persist → notify, real PostgreSQL); the sender is
``bench/soak.py``'s (closed loop, every ACK checked, a new booking each). RSS is read from
``/proc/<pid>/status`` after a warm-up and again after the measured run.

The bound: 8 MiB over 10,000 messages, about 840 bytes a message. Keeping the exchange of every
message (its raw bytes, the parsed message and its segments, the outcome) is several KiB a
message and would cross it; allocator and cache noise after warm-up (asyncpg's statement cache,
prometheus children, interned strings) stays far below it: the engine's RSS is flat within
0.2 MiB after its first thousand messages (the long curve: BENCHMARKS.md, section soak). The
run is short because the suite's time is; ``bench/soak.py`` runs the million.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import asyncpg

from bench.soak import drive, rss_kib
from tests.e2e.harness import write_channel

WARMUP = 1_000
MEASURED = 10_000
BOUND_KIB = 8 * 1024
CHANNEL = """
listen: 127.0.0.1:{port}
timezone: UTC
pipeline:
  - parse
  - validate
  - conflict_check
  - persist
  - notify
"""


async def analyze(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def listening(port: int, proc: subprocess.Popen, log: Path) -> None:
    async with asyncio.timeout(60):
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            return


async def test_rss_stays_flat_over_ten_thousand_messages(tmp_path: Path, db_url: str) -> None:
    port = free_port()
    write_channel(tmp_path / "channels", "scheduling", CHANNEL.format(port=port))
    env = {**os.environ, "RADSCHED_CHANNELS_DIR": str(tmp_path / "channels"),
           "RADSCHED_DATA_DIR": str(tmp_path / "data"), "RADSCHED_METRICS_LISTEN": "127.0.0.1:0",
           "RADSCHED_DATABASE_URL": db_url}
    log = tmp_path / "engine.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "radsched_engine.cli", "run"], cwd=tmp_path,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            await listening(port, proc, log)
            warm = await drive(port, WARMUP, 8, "SOAKW")
            assert warm.codes == {"AA": WARMUP} and warm.mismatched == 0, warm
            await analyze(db_url)     # autovacuum's first pass, a minute early: the suite's time
            before = rss_kib(proc.pid)
            run = await drive(port, MEASURED, 8, "SOAKM", offset=1_000_000)
            after = rss_kib(proc.pid)
            assert run.codes == {"AA": MEASURED} and run.mismatched == 0 and run.closed == 0, run
            assert before > 0 and after > 0
            assert after - before < BOUND_KIB, (
                f"engine RSS grew {after - before} KiB over {MEASURED} messages "
                f"({before} -> {after} KiB)")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, log.read_text()[-3000:]
