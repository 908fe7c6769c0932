"""Notify benchmark: ACK latency of the durable channel with the notify stage on vs off, in one run.

Run from the repository root:  python bench/run_notify_bench.py [--duration 10] [--connections 1,16]
[--channel shipped|lean] [--dry-run] [--no-write] [--rounds 2]

``--channel shipped`` (the default) runs the durable channel, ``channels/default.yaml`` as
shipped (parse → validate → conflict_check → persist → notify), "off" being the same file without
its ``notify`` line; ``--channel lean`` runs parse → validate → persist (+ notify), the stricter
comparison (the text's cost against a smaller whole). Either runs against one private embedded
PostgreSQL, fsync on (a fresh database per run; ``--rounds`` runs of each, interleaved off, on,
on, off, since a shared machine drifts; the summary compares medians); the message is the
durable bench's (a new booking each, rooms, staff and patients of the run's own). "On" queues a
text per booking in the same transaction, and the engine's outbox worker sends them meanwhile through
the real twilio SDK to the local fake Twilio (``tests/fakes``; ``--dry-run``: no credentials,
rows are only marked). The engine (with its outbox worker process) is pinned to core 0;
PostgreSQL, the load generator and this script's process share core 1, where the fake Twilio
runs in threads under ``SCHED_IDLE`` (it stands for a service on other machines, whose CPU is
not ours to share). Besides latency it records the CPU time
per message of the engine process and of all PostgreSQL processes (and prints the latter by
client: engine, outbox worker, background). The figures replace the ``notify`` section of
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import asyncpg
import psutil

from bench import harness
from bench import run_durable_bench as durable

CHANNEL = """\
listen: ${{RADSCHED_MLLP_LISTEN}}
timezone: UTC
pipeline:
  - parse
  - validate
  - persist
{notify}"""


def _postmaster(data_dir: Path) -> psutil.Process:
    return psutil.Process(int((data_dir / "postmaster.pid").read_text().split()[0]))


async def _sql(url: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query)
    finally:
        await conn.close()


def _interleaved(rounds: int) -> list[str]:
    """off, on, on, off, off, on, ...: each mode equally early and late in the sequence."""
    return [m for r in range(rounds) for m in (("off", "on") if r % 2 == 0 else ("on", "off"))]


def _middle(values: list[float]) -> float:
    """The median (mean of the middle two for an even count)."""
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--connections", default="1,16")
    ap.add_argument("--channel", choices=("shipped", "lean"), default="shipped",
                    help="shipped: channels/default.yaml with and without notify; lean: parse, "
                         "validate, persist (+ notify)")
    ap.add_argument("--dry-run", action="store_true", help="no Twilio credentials: texts only recorded")
    ap.add_argument("--no-write", action="store_true", help="print the section instead of writing it")
    ap.add_argument("--poll", default="0.5", help="RADSCHED_OUTBOX_POLL_SECONDS of the engine")
    ap.add_argument("--sms-rate", default="", help="RADSCHED_SMS_RATE of the engine (default: its own)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="runs per mode and connection count, interleaved off-on-on-off (the machine drifts)")
    args = ap.parse_args()
    conns = [int(c) for c in args.connections.split(",")]
    work = Path(tempfile.mkdtemp(prefix="radsched-notify-bench-"))
    pg, admin = harness.start_postgres(work / "pg-data", core=1)
    twilio = None
    if not args.dry_run:
        from tests.fakes.fake_twilio import FakeTwilio

        if len(harness.cores()) >= 2:       # the fake Twilio's thread: off the engine's core
            os.sched_setaffinity(0, {harness.cores()[1]})
        twilio = FakeTwilio()
        idle = hasattr(os, "SCHED_IDLE")
        if idle:                            # its threads inherit the policy; this one goes back
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        try:
            twilio.start()
        finally:
            if idle:
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    rows: list[dict] = []
    try:
        for n in conns:
            for i, mode in enumerate(_interleaved(args.rounds)):
                name = f"notify_{mode}_{n}_{i}"
                asyncio.run(_sql(admin, f'CREATE DATABASE "{name}"'))
                url = durable.with_database(admin, name)
                channels = work / name
                channels.mkdir()
                (channels / "scheduling.yaml").write_text(
                    durable.shipped_channel(None if mode == "on" else "notify")
                    if args.channel == "shipped" else
                    CHANNEL.format(notify="  - notify\n" if mode == "on" else ""))
                port = harness.free_port()
                env = {"RADSCHED_CHANNELS_DIR": str(channels), "RADSCHED_DATABASE_URL": url,
                       "RADSCHED_MLLP_LISTEN": f"127.0.0.1:{port}",
                       "RADSCHED_METRICS_LISTEN": f"127.0.0.1:{harness.free_port()}",
                       "RADSCHED_DATA_DIR": str(work / "data"), "RADSCHED_OUTBOX_POLL_SECONDS": args.poll,
                       **({"RADSCHED_SMS_RATE": args.sms_rate} if args.sms_rate else {}),
                       **(twilio.env() if twilio is not None else {})}
                with harness.server([sys.executable, "-m", "radsched_engine.cli", "run"], port, env=env,
                                    log=work / f"{name}.log") as proc:
                    engine, postmaster = psutil.Process(proc.pid), _postmaster(work / "pg-data" / "pg")
                    cpu0 = durable.tree_cpu(engine), durable.tree_cpu(postmaster)
                    pg0 = harness.pg_per_process(postmaster)
                    r = harness.loadgen(port, n, args.duration, warmup=args.warmup, run_id=name,
                                        template=durable.template(work, name))
                    cpu1 = durable.tree_cpu(engine), durable.tree_cpu(postmaster)
                    pg1 = harness.pg_per_process(postmaster)
                    who = {a["pid"]: a["who"] for a in asyncio.run(_sql(url, harness.WHO_SQL))}
                    counts = asyncio.run(_sql(url, "SELECT status, count(*) AS n FROM outbox GROUP BY 1"))
                    journal = asyncio.run(_sql(url, "SELECT count(*) AS n FROM hl7_messages"))[0]["n"]
                texts = ", ".join(f"{c['status']} {c['n']}" for c in counts) or "-"
                # CPU per message over the whole load (warm-up included), every journaled message.
                r["engine_us"] = round(1e6 * (cpu1[0] - cpu0[0]) / max(1, journal))
                r["pg_us"] = round(1e6 * (cpu1[1] - cpu0[1]) / max(1, journal))
                rows.append({"notify": mode, **r, "texts": texts})
                split = harness.pg_split(pg0, pg1, who)
                print("  postgres us/msg by client: " + ", ".join(
                    f"{k} {1e6 * v / max(1, journal):.0f}" for k, v in sorted(split.items())), flush=True)
                print(f"notify {mode:3} conns={n:3} {r['msgs_per_s']:>9} msg/s p50={r['p50_ms']} ms "
                      f"p99={r['p99_ms']} ms codes={r['ack_codes']} engine {r['engine_us']} us/msg "
                      f"postgres {r['pg_us']} us/msg outbox: {texts}", flush=True)
    finally:
        if twilio is not None:
            twilio.close()
        pg.stop()
        shutil.rmtree(work / "pg-data", ignore_errors=True)

    lines = []
    for n in conns:
        off, on = ({key: _middle([r[key] for r in rows if r["notify"] == mode and r["connections"] == n])
                    for key in ("p50_ms", "p99_ms", "engine_us", "pg_us")} for mode in ("off", "on"))
        for key, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
            if off[key] and on[key]:
                lines.append(f"- {n} connection(s), {label} (median of {args.rounds}): notify on is "
                             f"{100 * (on[key] - off[key]) / off[key]:+.1f} % vs off (target: within 10 %)")
        lines.append(f"- {n} connection(s), CPU per message (median; steadier than latency on a "
                     f"shared machine): engine {off['engine_us']:.0f} → {on['engine_us']:.0f} µs, "
                     f"PostgreSQL {off['pg_us']:.0f} → {on['pg_us']:.0f} µs (off → on)")
    body = "\n".join([
        "## Notify: durable channel ACK latency with notify on vs off (issue: notify)",
        "",
        f"Measured {harness.stamp()} on {harness.machine()}.",
        f"Command: `python bench/run_notify_bench.py --duration {args.duration:g}"
        f"{' --dry-run' if args.dry_run else ''}{f' --sms-rate {args.sms_rate}' if args.sms_rate else ''}"
        f"{f' --rounds {args.rounds}' if args.rounds != 2 else ''} --channel {args.channel}`"
        + (" — `channels/default.yaml` as shipped (parse, validate, conflict_check, persist, notify), "
           "off = the same file without notify, against a " if args.channel == "shipped" else
           " — parse, validate, persist (+ notify) against a ")
        + "private embedded PostgreSQL (fsync on, fresh database per run; runs interleaved off, on, on, "
        "off; CPU per message: engine process (with its outbox worker process) and all "
        "PostgreSQL processes over the whole load, warm-up included, per journaled message); "
        "message `bench/messages/siu_s12.hl7` with one technologist per room and the run's own "
        "rooms, staff and patients (a new booking each, nothing collides; one text each with notify "
        "on); "
        + ("texts recorded as dry runs (no credentials)." if args.dry_run else
           "the outbox worker sends the texts meanwhile through the twilio SDK to the local fake "
           "Twilio (`tests/fakes/fake_twilio.py`, its threads under SCHED_IDLE on core 1: it stands for "
           "a service on other machines) at the engine's SMS rate "
           f"(`RADSCHED_SMS_RATE`={args.sms_rate or 'default 10'}/s; texts beyond it wait in the "
           "outbox, as they would at Twilio beyond a sender's throughput)."),
        "",
        harness.table(rows, [("notify", "notify"), ("connections", "connections"),
                             ("msgs_per_s", "msgs/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
                             ("max_ms", "max ms"), ("engine_us", "engine CPU µs/msg"),
                             ("pg_us", "PostgreSQL CPU µs/msg"), ("ack_codes", "ACK codes"),
                             ("texts", "outbox at the end")]),
        "",
        *lines,
    ])
    if args.no_write:
        print(body)
    else:
        harness.write_section("notify", body)
        print("wrote BENCHMARKS.md")
    print(f"logs in {work}")


if __name__ == "__main__":
    main()
