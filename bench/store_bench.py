"""Store benchmark: parse → persist through the real unit of work, 1 and 16 concurrent tasks.

Run: ``/work/venv/bin/python -m bench.store_bench [--url URL] [--preload 1000000] [--write]``.
Not a test: it prints numbers (and with ``--write`` replaces its section of BENCHMARKS.md).

Each task plays one MLLP connection: it sends its messages one after the other through a
pipeline of the ``parse`` and ``persist`` stages inside ``Store.unit_of_work`` (BEGIN, one
``radsched_apply_appointment`` call that also writes the journal row, COMMIT with fsync on).
Messages are new SIU^S12 bookings spread over 40 rooms, 500 days and 200 000 patients, plus a
share of S14 updates of bookings made earlier in the run. Runs are repeated with the
appointments table empty and with ``--preload`` rows (3 resource rows each) to show that the
per-message cost stays flat. Without ``--url`` a private embedded PostgreSQL (pgserver, fsync
on, default settings) is started in a temp directory and removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import psutil

from radsched_engine.exchange import Exchange
from radsched_engine.pipeline import Pipeline, Resources
from radsched_engine.store import EmbeddedPostgres, Store, migrate

from . import harness

ROOT = Path(__file__).resolve().parent
TEMPLATE = (ROOT / "messages" / "siu_s12.hl7").read_text().strip().replace("\n", "\r") + "\r"
EPOCH = datetime(2027, 1, 4, 7, 0, tzinfo=UTC)
ROOMS = 40

PRELOAD_SQL = """
INSERT INTO appointments (appointment_key, channel, patient_id, patient_name, patient_key, modality,
                          study_type, datetime, duration, end_at, status, last_event_time)
SELECT 'bench|F:pre' || i, 'bench', 'PRE' || (i % 200000), 'PRELOADED PATIENT',
       'GENHOSP|PRE' || (i % 200000), 'CT', 'CT ABDOMEN', t, 30, t + interval '30 minutes',
       CASE WHEN i % 10 = 0 THEN 'CANCELLED' ELSE 'SCHEDULED' END, t - interval '3 days'
  FROM (SELECT i, $3::timestamptz - interval '400 days' + (i % 900) * interval '1 day'
                  + ((i / 900) % 24) * interval '30 minutes' AS t
          FROM generate_series($1::integer, $2::integer) AS i) s
"""
PRELOAD_RESOURCES_SQL = """
INSERT INTO appointment_resources (appointment_id, kind, code, text, start_at, end_at, active)
SELECT a.id, r.kind, r.code, '', a.datetime, a.end_at, a.active
  FROM appointments a
 CROSS JOIN LATERAL (VALUES ('location', 'PRE' || (a.id % 400)), ('personnel', 'T' || (a.id % 997)),
                            ('service', '74177')) AS r(kind, code)
 WHERE a.id BETWEEN $1 AND $2
"""


def message(cid: str, n: int, rng: random.Random) -> bytes:
    start = EPOCH + timedelta(days=rng.randrange(500), minutes=30 * rng.randrange(20))
    text = (TEMPLATE.replace("{cid}", cid).replace("{n}", str(rng.randrange(200000)))
            .replace("{start}", start.strftime("%Y%m%d%H%M%S+0000"))
            .replace("{room}", f"CT{rng.randrange(ROOMS)}"))
    return text.encode()


def update(booked: bytes, cid: str) -> bytes:
    """An S14 for a booking made earlier: same ids, new control id and a note."""
    lines = booked.decode().split("\r")
    msh = lines[0].split("|")
    msh[8], msh[9] = "SIU^S14^SIU_S12", cid
    msh[6] = "20261202083000+0000"
    lines[0] = "|".join(msh)
    lines.insert(2, f"NTE|1||updated {cid}")
    return "\r".join(lines).encode()


async def preload(url: str, rows: int) -> float:
    started = time.perf_counter()
    conn = await asyncpg.connect(url, command_timeout=3600)
    try:
        have = await conn.fetchval("SELECT count(*) FROM appointments WHERE channel = 'bench'")
        step = 100_000
        for first in range(have + 1, rows + 1, step):
            last = min(rows, first + step - 1)
            await conn.execute(PRELOAD_SQL, first, last, EPOCH)
            lo, hi = await conn.fetchrow("SELECT min(id), max(id) FROM appointments WHERE "
                                         "appointment_key = ANY($1::text[])",
                                         [f"bench|F:pre{first}", f"bench|F:pre{last}"])
            await conn.execute(PRELOAD_RESOURCES_SQL, lo, hi)
        await conn.execute("VACUUM ANALYZE appointments")
        await conn.execute("VACUUM ANALYZE appointment_resources")
    finally:
        await conn.close()
    return time.perf_counter() - started


def build_pipeline(store: Store, channel: str) -> Pipeline:
    from radsched_engine.stages import parse, persist

    resources = Resources(channel=channel, settings=SimpleNamespace(name=channel, tz=UTC), store=store)
    steps = [(spec, spec.factory(spec.options(), resources)) for spec in (parse.SPEC, persist.SPEC)]
    return Pipeline(channel, steps, store.unit_of_work(channel))


def server_cpu(pid: int | None) -> float:
    """CPU seconds used so far by the PostgreSQL server ``pid`` and its backends (0 if unknown)."""
    if pid is None:
        return 0.0
    try:
        root = psutil.Process(pid)
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
            except psutil.NoSuchProcess:
                continue
        return total
    except psutil.NoSuchProcess:
        return 0.0


async def run(store: Store, tasks: int, per_task: int, run_id: str, update_share: float,
              server_pid: int | None = None) -> dict:
    pipeline = build_pipeline(store, "bench")
    latencies: list[float] = []
    outcomes: dict[str, int] = {}

    async def connection(t: int) -> None:
        rng = random.Random(f"{run_id}-{t}")
        booked: list[bytes] = []
        for i in range(per_task):
            cid = f"{run_id}-{t}-{i}"
            if booked and rng.random() < update_share:
                raw = update(rng.choice(booked), cid)
            else:
                raw = message(cid, i, rng)
                booked.append(raw)
            ex = Exchange(raw=raw, channel="bench", peer="bench", received_at=datetime.now(UTC))
            began = time.perf_counter()
            await pipeline.run(ex)
            latencies.append(time.perf_counter() - began)
            key = ex.outcome.value if ex.outcome else "none"
            outcomes[key] = outcomes.get(key, 0) + 1

    began, cpu, db_cpu = time.perf_counter(), time.process_time(), server_cpu(server_pid)
    await asyncio.gather(*(connection(t) for t in range(tasks)))
    elapsed = time.perf_counter() - began
    cpu, db_cpu = time.process_time() - cpu, server_cpu(server_pid) - db_cpu
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {"tasks": tasks, "messages": len(latencies), "rate": f"{len(latencies) / elapsed:,.0f}",
            "p50": f"{pick(0.50):.2f}", "p99": f"{pick(0.99):.2f}",
            "mean": f"{statistics.fmean(latencies) * 1000:.2f}",
            "cpu": f"{cpu / len(latencies) * 1e6:.0f}",
            "db_cpu": f"{db_cpu / len(latencies) * 1e6:.0f}" if server_pid else "n/a",
            "outcomes": ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))}


async def round_trip_us(store: Store) -> float:
    async with store.connection() as conn:
        stmt = await conn.prepare("SELECT 1")
        began = time.perf_counter()
        for _ in range(2000):
            await stmt.fetchval()
        return (time.perf_counter() - began) / 2000 * 1e6


async def main(args: argparse.Namespace) -> None:
    embedded, tmp = None, None
    url = args.url
    if not url:
        tmp = Path(tempfile.mkdtemp(prefix="radsched-bench-"))
        embedded = EmbeddedPostgres(tmp)
        url = await asyncio.to_thread(embedded.start)
    try:
        await migrate(url)
        store = await Store.open(url, pool_min=16, pool_max=16)
        server_pid = None
        async with store.connection() as conn:       # a server on this machine: count its CPU
            try:
                backend = psutil.Process(await conn.fetchval("SELECT pg_backend_pid()"))
                if backend.name() == "postgres":
                    server_pid = backend.ppid()
            except psutil.Error:
                pass
        rows: list[dict[str, Any]] = []
        try:
            rtt = await round_trip_us(store)
            for preloaded in sorted({0, args.preload}):
                seconds = await preload(url, preloaded) if preloaded else 0.0
                if preloaded:
                    print(f"preloaded {preloaded:,} appointments in {seconds:.0f} s", flush=True)
                for tasks in (1, 16):
                    per_task = args.messages // tasks
                    await run(store, tasks, min(per_task, 200), f"w{preloaded}-{tasks}", 0.2)  # warm-up
                    result = await run(store, tasks, per_task, f"r{preloaded}-{tasks}", 0.2, server_pid)
                    result["preloaded"] = f"{preloaded:,}"
                    print(result, flush=True)
                    rows.append(result)
        finally:
            await store.close()
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    body = "\n".join([
        "## Store: parse → persist (unit of work, fsync on)",
        "",
        f"`python -m bench.store_bench --preload {args.preload} --messages {args.messages}` — "
        f"{harness.stamp()}; {harness.machine()}; "
        f"{'external PostgreSQL' if args.url else 'embedded PostgreSQL 16 (pgserver, default settings)'}"
        f", `SELECT 1` round trip {rtt:.0f} µs.",
        "",
        "80 % new SIU^S12 bookings, 20 % S14 updates; each task = one connection sending one "
        "message at a time. Latency = `Pipeline.run` (parse, BEGIN, apply + journal, COMMIT).",
        "",
        harness.table(rows, [("preloaded", "appointments before"), ("tasks", "tasks"),
                             ("messages", "messages"), ("rate", "msg/s"), ("p50", "p50 ms"),
                             ("p99", "p99 ms"), ("mean", "mean ms"), ("cpu", "engine CPU µs/msg"),
                             ("db_cpu", "PostgreSQL CPU µs/msg"), ("outcomes", "outcomes")]),
    ])
    print(body)
    if args.write:
        harness.write_section("store", body)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="PostgreSQL URL (default: a private embedded server)")
    parser.add_argument("--preload", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=16_000, help="messages per run")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    asyncio.run(main(parser.parse_args()))
