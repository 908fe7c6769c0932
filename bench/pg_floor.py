"""PostgreSQL's floor for the durable channel's writes: how fast the server alone takes them.

Run from the repository root:
    python bench/pg_floor.py [--runs 2x4,4x4,2x8] [--seconds 10]

Not the engine: C concurrent asyncpg clients (pinned to core 0) each commit, in a loop, one
batch of K new bookings written the cheapest way SQL allows: one set-based statement per batch
that inserts, for each booking, its journal row (~700 bytes of raw message), its appointment,
3 resource rows and one outbox row, into the engine's own schema (every migration applied, all
its indexes) on a private embedded PostgreSQL (fsync on) pinned to core 1. No reads: no
redelivery check, no neighbour search, no locks. The figures bound what any design of the
persist path could reach on this machine's database core: the engine's own path (one function
call per message, which also reads) is compared with them in BENCHMARKS.md's durable notes.
Prints one line per run; writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import asyncpg

from bench import harness
from bench.run_durable_bench import ensure_database, pin_tree, postmaster, tree_cpu, with_database
from radsched_engine.store import migrate

# $1 client, $2 the client's batch number (keys unique per client and batch), $3 bookings in it.
BATCH = """
WITH j AS (
  INSERT INTO hl7_messages (channel, received_at, peer, control_id, sending_application,
                            sending_facility, message_type, raw, content_hash, outcome, ack_code)
  SELECT 'floor', now(), '127.0.0.1', 'C' || $1::text || '-' || $2::bigint || '-' || g, 'RIS', 'GENHOSP',
         'SIU^S12',
         convert_to(repeat('MSH|^~RIS|GENHOSP|RADSCHED|RADIOLOGY|20261201083000+0000||SIU^S12|', 9),
                    'UTF8'),
         sha256(convert_to($1::text || '-' || $2::bigint || '-' || g, 'UTF8')), 'accepted', 'AA'
    FROM generate_series(1, $3::int) AS g RETURNING id),
a AS (
  INSERT INTO appointments (appointment_key, channel, patient_id, patient_name, patient_phone,
                            modality, study_type, datetime, end_at, duration, status, urgency,
                            conflicts, placer_id, filler_id, sending_application,
                            sending_facility, patient_key, last_trigger, last_event_time)
  SELECT 'floor|F:' || $1::text || '-' || $2::bigint || '-' || g, 'floor', 'MRN' || $2::bigint || g,
         'TESTPATIENT^JANE',
         '+14135550199', 'CT', 'CT ABDOMEN AND PELVIS WITH CONTRAST',
         timestamptz '2027-01-04 07:00+00' + (($2::bigint % 100000) * 40 + g) * interval '30 min',
         timestamptz '2027-01-04 07:30+00' + (($2::bigint % 100000) * 40 + g) * interval '30 min', 30,
         'SCHEDULED', 'routine', '[{"rule": "PREP-INSTRUCTIONS", "severity": "info"}]'::jsonb,
         'P' || $2::bigint || g, 'F' || $2::bigint || g, 'RIS', 'GENHOSP',
         'GENHOSP|MRN' || $1::text || '-' || $2::bigint || '-' || g,
         'S12', now()
    FROM generate_series(1, $3::int) AS g RETURNING id, datetime, end_at),
r AS (
  INSERT INTO appointment_resources (appointment_id, kind, code, text, start_at, end_at)
  SELECT a.id, v.kind, v.code || (a.id % 40), v.text, a.datetime, a.end_at
    FROM a CROSS JOIN (VALUES ('service', '74177', 'CT ABDOMEN'), ('location', 'ROOM', 'CT'),
                              ('personnel', 'TECH', 'RAD TECH')) AS v(kind, code, text))
INSERT INTO outbox (kind, dedupe_key, payload, appointment_id)
SELECT 'sms', 'sms:' || a.id || ':S12',
       jsonb_build_object('order_key', 'sms:' || a.id, 'event', 'S12',
                          'facts', jsonb_build_object('phones', '["+14135550199"]'::jsonb,
                                                      'exam', 'CT ABDOMEN')), a.id
  FROM a
"""


async def _client(url: str, client: int, k: int, stop: asyncio.Event) -> None:
    conn = await asyncpg.connect(url)
    statement = await conn.prepare(BATCH)
    batch = 0
    while not stop.is_set():
        batch += 1
        async with conn.transaction():
            await statement.fetch(str(client), batch, k)
    await conn.close()


async def _count(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT count(*) FROM hl7_messages")
    finally:
        await conn.close()


async def _run(url: str, pg, clients: int, k: int, seconds: float) -> tuple[float, float]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(_client(url, c, k, stop)) for c in range(clients)]
    await asyncio.sleep(2.0)                                   # warm-up
    rows0, cpu0, t0 = await _count(url), tree_cpu(pg), time.perf_counter()
    await asyncio.sleep(seconds)
    rows1, cpu1, t1 = await _count(url), tree_cpu(pg), time.perf_counter()
    stop.set()
    await asyncio.gather(*tasks)
    return (rows1 - rows0) / (t1 - t0), (cpu1 - cpu0) / (t1 - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="2x4,4x4,2x8", help="CLIENTSxBATCH, comma-separated")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    if len(harness.cores()) >= 2:
        os.sched_setaffinity(0, {harness.cores()[0]})
    work = Path(tempfile.mkdtemp(prefix="radsched-pg-floor-"))
    embedded, admin = harness.start_postgres(work / "pg-data", core=1)
    pg = asyncio.run(postmaster(admin))
    pin_tree(pg, 1)
    print(f"{harness.stamp()} on {harness.machine()}")
    try:
        for spec in args.runs.split(","):
            clients, k = (int(x) for x in spec.split("x"))
            ensure_database(admin, "floor", reuse=False)
            url = with_database(admin, "floor")
            asyncio.run(migrate(url))
            rate, busy = asyncio.run(_run(url, pg, clients, k, args.seconds))
            print(f"{clients} clients, {k} bookings per commit: {rate:,.0f} msgs/s, PostgreSQL "
                  f"{100 * busy:.0f} % of its core, {1e6 * busy / rate:.0f} µs CPU per message",
                  flush=True)
    finally:
        embedded.stop()


if __name__ == "__main__":
    main()
