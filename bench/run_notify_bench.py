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
per message, in a window mid-run, of the engine process, of all PostgreSQL processes (and prints
the latter by client: engine, outbox worker, background) and of the load generator, the control
(the same work per message in both modes: when it is higher the machine was slower). The figures
replace the ``notify`` section of BENCHMARKS.md.
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
    postmaster = _postmaster(work / "pg-data" / "pg")
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
                channel = (durable.shipped_channel(None if mode == "on" else "notify")
                           if args.channel == "shipped" else
                           CHANNEL.format(notify="  - notify\n" if mode == "on" else ""))
                env = {"RADSCHED_OUTBOX_POLL_SECONDS": args.poll,
                       **({"RADSCHED_SMS_RATE": args.sms_rate} if args.sms_rate else {}),
                       **(twilio.env() if twilio is not None else {})}
                # CPU per message in a window mid-run (durable.measure), the load generator's the
                # control: the same work per message in both modes, so it shows a slow spell.
                r = durable.measure(url, postmaster, work, name, n, args.duration, args.warmup, env,
                                    channel=channel, template_path=durable.template(work, name))
                for key in ("engine_us", "pg_us", "loadgen_us"):
                    r[key] = int(r[key])
                counts = asyncio.run(_sql(url, "SELECT status, count(*) AS n FROM outbox GROUP BY 1"))
                texts = ", ".join(f"{c['status']} {c['n']}" for c in counts) or "-"
                rows.append({"notify": mode, **r, "texts": texts})
                print("  postgres us/msg by client: " + ", ".join(
                    f"{k} {v}" for k, v in r["pg_split"].items()), flush=True)
                print(f"notify {mode:3} conns={n:3} {r['msgs_per_s']:>9} msg/s p50={r['p50_ms']} ms "
                      f"p99={r['p99_ms']} ms codes={r['ack_codes']} engine {r['engine_us']} us/msg "
                      f"postgres {r['pg_us']} us/msg loadgen {r['loadgen_us']} us/msg outbox: {texts}",
                      flush=True)
    finally:
        if twilio is not None:
            twilio.close()
        pg.stop()
        shutil.rmtree(work / "pg-data", ignore_errors=True)

    lines = []
    for n in conns:
        off, on = ({key: _middle([r[key] for r in rows if r["notify"] == mode and r["connections"] == n])
                    for key in ("p50_ms", "p99_ms", "engine_us", "pg_us", "loadgen_us")}
                   for mode in ("off", "on"))
        for key, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
            if off[key] and on[key]:
                lines.append(f"- {n} connection(s), {label} (median of {args.rounds}): notify on is "
                             f"{100 * (on[key] - off[key]) / off[key]:+.1f} % vs off (target: within 10 %)")
        lines.append(f"- {n} connection(s), CPU per message (median; steadier than latency on a "
                     f"shared machine): engine {off['engine_us']:.0f} → {on['engine_us']:.0f} µs, "
                     f"PostgreSQL {off['pg_us']:.0f} → {on['pg_us']:.0f} µs (off → on); load generator "
                     f"{off['loadgen_us']:.0f} → {on['loadgen_us']:.0f} µs (the control: the same "
                     f"work in both modes, higher means a slower machine)")
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
        "off; CPU per message: engine process (with its outbox worker process), all PostgreSQL "
        "processes and the load generator over a window mid-run, per message answered in it); "
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
                             ("pg_us", "PostgreSQL CPU µs/msg"), ("loadgen_us", "loadgen µs/msg"),
                             ("ack_codes", "ACK codes"),
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
