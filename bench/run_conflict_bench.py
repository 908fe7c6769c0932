"""Conflict-check benchmark: the durable channel's throughput with conflict_check on vs off, in one run.

Run from the repository root:
    python bench/run_conflict_bench.py [--preload 1000000] [--duration 10] [--connections 1,16]
                                       [--channel shipped|lean] [--url URL [--keep]]
                                       [--env NAME=VALUE] [--explain] [--rounds 2] [--no-write]

``--channel shipped`` (the default) runs the durable channel, ``channels/default.yaml`` as
shipped (parse → validate → conflict_check → persist → notify; no Twilio credentials, so the
texts are queued in the transaction and recorded as dry runs), "off" being the same file without
its ``conflict_check`` line; ``--channel lean`` runs parse → validate (→ conflict_check) →
persist alone, the stricter comparison (the check's cost against a smaller whole). Either runs
against one private embedded
PostgreSQL (fsync on) holding ``--preload`` appointments (3 resource rows each, as in
``bench/store_bench.py``); off and on alternate per connection count on the same database. The
message is ``bench/messages/siu_s12.hl7`` with one technologist per room and rooms, staff and
patients of each run's own, so the load is realistic: every booking is checked against its
room, technologist and patient, but nothing collides (only the exam's prep advice is stored). No
ANTHROPIC_API_KEY: rules only. ``--explain`` prints the plan of the neighbourhood query at the
preloaded size. Per connection count the two modes run interleaved, ``--rounds`` times each (off,
on, on, off, ...), each run after a VACUUM ANALYZE of the written tables and a CHECKPOINT, and the
medians are compared. Run once each, off then on, "on" always ran second: after the preload's and the first
run's writes (checkpoints, full-page images, autovacuum), and a shared machine drifts between two
runs by more than the check costs (the load generator's CPU per message, the same work in both
modes, is printed as the control). The engine is pinned to core 0; PostgreSQL and the load
generator share core 1.
Each run is measured like the durable bench (``run_durable_bench.measure``): besides throughput
and latency, CPU time per answered message of the engine and of PostgreSQL, and commits per
message -- the figures that stay comparable when the machine is shared (throughput does not).
The figures replace the ``conflicts`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import asyncpg

from bench import harness
from bench import run_durable_bench as durable
from bench.store_bench import EPOCH, preload
from radsched_engine.store import migrate

ROOT = Path(__file__).resolve().parent
CHANNEL = """\
listen: ${{RADSCHED_MLLP_LISTEN}}
timezone: UTC
pipeline:
  - parse
  - validate
{check}  - persist
"""
# The neighbour search inside radsched_conflict_context (migration 0101), copied here to show
# the generic plan PL/pgSQL caches for it (pgserver ships no auto_explain).
NEIGHBOURS = """
PREPARE neighbours(text[], text[], timestamptz, timestamptz, text, timestamptz, timestamptz,
                   text[], integer) AS
WITH hits AS (
    SELECT b.appointment_id AS aid FROM radsched_booked($1, $2, $3, $4) AS b
    UNION
    SELECT x.id FROM appointments AS x
     WHERE $5 <> '' AND x.patient_key = $5 AND x.active AND x.patient_key <> ''
       AND x.datetime < $7 AND x.end_at > $6
)
SELECT 'other'::text, a.id, a.appointment_key, a.status, a.urgency, a.datetime, a.end_at,
       a.patient_key, a.last_event_time, a.last_message_id, NULL::jsonb,
       (SELECT coalesce(jsonb_agg(jsonb_build_array(r.kind, r.code, r.text, r.coding_system,
                                                    r.role) ORDER BY r.id), '[]'::jsonb)
          FROM appointment_resources AS r WHERE r.appointment_id = a.id)
  FROM hits JOIN appointments AS a ON a.id = hits.aid
 WHERE a.active AND a.id IS DISTINCT FROM $9
   AND a.appointment_key <> ALL ($8) AND coalesce(a.alt_key, '') <> ALL ($8)
 ORDER BY a.datetime, a.id
"""


async def explain(url: str) -> str:
    """EXPLAIN ANALYZE of the neighbour search as PL/pgSQL runs it (generic plan), for a booking
    of a preloaded room, technologist and patient."""
    at = EPOCH + timedelta(days=100, hours=2)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(NEIGHBOURS)
        args = (f"ARRAY['location', 'personnel'], ARRAY['PRE7', 'T7'], '{at.isoformat()}', "
                f"'{(at + timedelta(minutes=30)).isoformat()}', 'GENHOSP|PRE7', "
                f"'{(at - timedelta(days=42)).isoformat()}', '{(at + timedelta(days=42)).isoformat()}', "
                "ARRAY['bench|F:none'], NULL")
        rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE neighbours({args})")
        return "\n".join(r[0] for r in rows)
    finally:
        await conn.close()


def interleaved(rounds: int) -> list[str]:
    """off, on, on, off, off, on, ...: neither mode always runs first, or second."""
    return [m for i in range(rounds) for m in (("off", "on") if i % 2 == 0 else ("on", "off"))]


async def settle(url: str, wait: float = 30.0) -> None:
    """Start each run from the same, steady database state: no autovacuum worker busy (waited
    for up to ``wait`` seconds), the tables the runs write vacuumed and analyzed (what autovacuum
    does a minute or two later on its own), then a CHECKPOINT, so that no run pays for the
    previous run's (or the preload's) dirty buffers and unvacuumed rows.

    The same embedded server, database and code measured 125 -> 87 msgs/s at 1 connection
    (off -> on, 30 %) in the first runs after the preload and 167 -> 159 (5 %) a few minutes
    later: the first runs measured the database settling after the bulk load as much as the
    check."""
    conn = await asyncpg.connect(url)
    try:
        deadline = asyncio.get_running_loop().time() + wait
        while await conn.fetchval("SELECT count(*) FROM pg_stat_activity "
                                  "WHERE backend_type = 'autovacuum worker'"):
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.5)
        await conn.execute("VACUUM (ANALYZE) hl7_messages, appointments, appointment_resources, "
                           "outbox")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


def channel(kind: str, mode: str) -> str:
    """The channel file of one run: ``kind`` shipped or lean, conflict_check ``mode`` on or off."""
    if kind == "shipped":
        return durable.shipped_channel(None if mode == "on" else "conflict_check")
    return CHANNEL.format(check="  - conflict_check\n" if mode == "on" else "")


def medians(rows: list[dict]) -> dict[str, float]:
    """Median throughput and CPU per message of ``rows`` (runs of one mode)."""
    def med(key: str) -> float:
        values = sorted(float(r[key]) for r in rows if r.get(key) not in (None, "n/a"))
        if not values:
            return 0.0
        mid = len(values) // 2
        return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    return {k: med(k) for k in ("msgs_per_s", "engine_us", "pg_us", "loadgen_us")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preload", type=int, default=1_000_000, help="appointments stored before the runs")
    durable.add_run_args(ap, warmup=2.0)
    ap.add_argument("--explain", action="store_true", help="print the neighbourhood query's plan")
    ap.add_argument("--channel", choices=("shipped", "lean"), default="shipped",
                    help="shipped: channels/default.yaml with and without conflict_check; lean: "
                         "parse, validate, (conflict_check,) persist")
    ap.add_argument("--rounds", type=int, default=2,
                    help="per connection count, run off/on this many times each, interleaved "
                         "(off, on, on, off, ...); the medians are compared")
    args = ap.parse_args()
    conns = [int(c) for c in args.connections.split(",")]
    env_extra = dict(item.split("=", 1) for item in args.env)
    work = Path(tempfile.mkdtemp(prefix="radsched-conflict-bench-"))
    embedded = None
    admin = args.url
    if not admin:
        embedded, admin = harness.start_postgres(work / "pg-data", core=1)
    pg = asyncio.run(durable.postmaster(admin))
    durable.pin_tree(pg, 1)
    name = f"conflicts_{args.preload}" if args.keep else f"conflicts_{os.getpid()}"
    rows: list[dict] = []
    plan = ""
    try:
        durable.ensure_database(admin, name, reuse=args.keep)
        url = durable.with_database(admin, name)
        asyncio.run(migrate(url))
        seconds = asyncio.run(preload(url, args.preload)) if args.preload else 0.0
        print(f"preloaded {args.preload:,} appointments in {seconds:.0f} s", flush=True)
        if args.explain:
            plan = asyncio.run(explain(url))
            print(plan, flush=True)
        for n in conns:
            for i, mode in enumerate(interleaved(args.rounds)):
                asyncio.run(settle(url))
                run = f"conflicts_{mode}_{n}_{i}_{os.getpid()}"
                r = durable.measure(url, pg, work, run, n, args.duration, args.warmup, env_extra,
                                    channel=channel(args.channel, mode),
                                    template_path=durable.template(work, run))
                rows.append({"conflict_check": mode, "round": i // 2 + 1, **r})
                print(f"conflict_check {mode:3} conns={n:3} {r['msgs_per_s']:>9} msg/s "
                      f"p50={r['p50_ms']} ms p99={r['p99_ms']} ms engine={r['engine_us']} µs/msg "
                      f"pg={r['pg_us']} µs/msg tx/msg={r['tx_per_msg']} codes={r['ack_codes']}",
                      flush=True)
                print("  PostgreSQL µs/msg by client: " + ", ".join(
                    f"{k} {v}" for k, v in r["pg_split"].items()), flush=True)
    finally:
        if not args.keep:
            try:
                asyncio.run(durable._sql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except Exception as exc:          # the server may already be gone
                print(f"could not drop {name}: {exc}", file=sys.stderr)
        if embedded is not None:
            embedded.stop()
            shutil.rmtree(work / "pg-data", ignore_errors=True)

    lines = []
    for n in conns:
        off = medians([r for r in rows if r["conflict_check"] == "off" and r["connections"] == n])
        on = medians([r for r in rows if r["conflict_check"] == "on" and r["connections"] == n])
        if off["msgs_per_s"]:
            cost = 100 * (off["msgs_per_s"] - on["msgs_per_s"]) / off["msgs_per_s"]
            lines.append(f"- {n} connection(s), medians of {args.rounds} run(s) each: "
                         f"{off['msgs_per_s']:.0f} → {on['msgs_per_s']:.0f} msgs/s, conflict_check "
                         f"costs {cost:.1f} % of the throughput (target: under 20 %); CPU per "
                         f"message: engine {off['engine_us']:.0f} → {on['engine_us']:.0f} µs, "
                         f"PostgreSQL {off['pg_us']:.0f} → {on['pg_us']:.0f} µs, load generator "
                         f"{off['loadgen_us']:.0f} → {on['loadgen_us']:.0f} µs (the control: its "
                         "work per message is the same in both modes)")
    body = "\n".join([
        "## Conflict check: durable channel throughput with conflict_check on vs off (issue 4)",
        "",
        f"Measured {harness.stamp()} on {harness.machine()}.",
        f"Command: `python bench/run_conflict_bench.py --preload {args.preload} --duration "
        f"{args.duration:g} --rounds {args.rounds} --channel {args.channel}` — off and on "
        "interleaved per connection count (off, on, on, off, ...), each run after VACUUM ANALYZE of "
        "the written tables and a CHECKPOINT; "
        + ("`channels/default.yaml` as shipped (parse, validate, conflict_check, persist, notify; "
           "no Twilio credentials: texts queued in the transaction and recorded as dry runs), off = "
           "the same file without conflict_check, " if args.channel == "shipped" else
           "parse, validate, (conflict_check,) persist, ")
        + "against a private embedded "
        f"PostgreSQL (fsync on) holding {args.preload:,} appointments before the first run; "
        "message `bench/messages/siu_s12.hl7` with one technologist per room and each run's own rooms, "
        "staff and patients (a new booking each: room, technologist and patient checked, no "
        "collisions); rules only (no Claude key).",
        "",
        harness.table(rows, [("conflict_check", "conflict_check"), ("round", "round"),
                             ("connections", "connections"),
                             ("msgs_per_s", "msgs/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
                             ("max_ms", "max ms"), ("engine_us", "engine µs/msg"),
                             ("pg_us", "PostgreSQL µs/msg"), ("loadgen_us", "loadgen µs/msg"),
                             ("tx_per_msg", "commits/msg"), ("ack_codes", "ACK codes")]),
        "",
        *lines,
    ])
    if args.no_write:
        print(body)
    else:
        harness.write_section("conflicts", body)
        print("wrote BENCHMARKS.md")
    print(f"logs in {work}")


if __name__ == "__main__":
    main()
