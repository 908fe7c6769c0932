"""Notify benchmark: ACK latency of the durable channel with the notify stage on vs off, in one run.

Run from the repository root:  python bench/run_notify_bench.py [--pairs 15] [--segment 3]
[--connections 1,16] [--channel shipped|lean] [--dry-run] [--no-write]
[--method runs --duration 10 --rounds 2]

``--channel shipped`` (the default) runs the durable channel, ``channels/default.yaml`` as
shipped (parse → validate → conflict_check → persist → notify), "off" being the same file without
its ``notify`` line; ``--channel lean`` runs parse → validate → persist (+ notify), the stricter
comparison (the text's cost against a smaller whole). Either runs against one private embedded
PostgreSQL, fsync on; the message is the durable bench's (a new booking each, rooms, staff and
patients of the segment's or run's own).

The default method (``alternate``) starts both engines at once, each on a database of its own,
and switches the load between them every ``--segment`` seconds, ``--pairs`` times (off-on, then
on-off, ...): this machine's speed drifts over seconds to minutes by more than the difference
measured, and a drift slower than a pair falls on both modes alike. The engine not under load
has its outbox worker process stopped (SIGSTOP), so the off segments carry none of the on
engine's sending. The summary gives p50/p99 over all segments of a mode and the median of the
pair-by-pair differences. ``--method runs`` is the earlier way: one engine per run on a fresh
database, ``--rounds`` runs of each mode interleaved off, on, on, off, medians compared.

"On" queues a
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
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
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


def _hold(engine: psutil.Process, run: bool) -> None:
    """Let ``engine``'s child processes (its outbox worker) run, or stop them (SIGSTOP)."""
    for child in engine.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child.send_signal(signal.SIGCONT if run else signal.SIGSTOP)


def _pct(lat: list[int], p: float) -> float:
    return round(lat[min(len(lat) - 1, int(p * len(lat)))] / 1e6, 3) if lat else float("nan")


def _segment(engine: dict, pg: psutil.Process, work: Path, tag: str, connections: int,
             seconds: float, warmup: float) -> dict:
    """One stretch of load on ``engine``: latencies (ns), messages answered and CPU seconds of
    the engine (with its worker process), PostgreSQL and the load generator while recording."""
    out = work / f"lat-{tag}.json"
    gen = subprocess.Popen(
        [*harness.pin(1), sys.executable, "-m", "bench.loadgen", "--port", str(engine["port"]),
         "--connections", str(connections), "--duration", str(seconds), "--warmup", str(warmup),
         "--template", str(durable.template(work, tag)), "--run-id", tag, "--latencies", str(out)],
        cwd=harness.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(warmup + 0.1)
    before = (durable.answered(engine["mport"]), durable.tree_cpu(engine["proc"]), durable.tree_cpu(pg))
    time.sleep(max(0.5, seconds - 0.3))
    after = (durable.answered(engine["mport"]), durable.tree_cpu(engine["proc"]), durable.tree_cpu(pg))
    stdout, stderr = gen.communicate(timeout=seconds + warmup + 120)
    if gen.returncode != 0:
        raise RuntimeError(f"load generator failed: {stderr[-2000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    answered = max(1.0, after[0] - before[0])
    return {**result, "latencies": json.loads(out.read_text()), "answered": answered,
            "engine_s": after[1] - before[1], "pg_s": after[2] - before[2],
            "loadgen_s": result["cpu_us_per_msg"] * result["messages"] / 1e6}


def alternate(args: argparse.Namespace, conns: list[int], admin: str, pg: psutil.Process,
              work: Path, twilio_env: dict[str, str]) -> tuple[list[dict], list[str]]:
    """Both engines up at once, on databases of their own; the load switches between them every
    ``--segment`` seconds (pairs in the order off-on, on-off, ...), so a drift of the machine
    slower than a pair falls on both alike. The engine not under load has its outbox worker
    stopped (SIGSTOP): the off figures carry none of the on engine's sending; the on engine's
    worker sends (its backlog, at its rate) while the on engine is measured, and catches up
    its rate's burst when let go again (a little more sending than steady)."""
    rows: list[dict] = []
    lines: list[str] = []
    for n in conns:
        with contextlib.ExitStack() as stack:
            engines: dict[str, dict] = {}
            for mode in ("off", "on"):
                name = f"notify_alt_{mode}_{n}"
                durable.ensure_database(admin, name, reuse=False)
                url = durable.with_database(admin, name)
                channel = (durable.shipped_channel(None if mode == "on" else "notify")
                           if args.channel == "shipped" else
                           CHANNEL.format(notify="  - notify\n" if mode == "on" else ""))
                env = {"RADSCHED_OUTBOX_POLL_SECONDS": args.poll, "RADSCHED_DATA_DIR": str(work / name),
                       **({"RADSCHED_SMS_RATE": args.sms_rate} if args.sms_rate else {}), **twilio_env}
                cmd, env, port, mport = durable.engine_command(url, work, name, env, channel)
                proc = stack.enter_context(harness.server(cmd, port, env=env, log=work / f"{name}.log"))
                harness.wait_port(mport, 30, proc)
                engines[mode] = {"proc": psutil.Process(proc.pid), "port": port, "mport": mport, "url": url}
            for engine in engines.values():     # (a stopped worker would hold up the shutdown)
                stack.callback(_hold, engine["proc"], True)
            for mode, engine in engines.items():          # first contact, not measured
                _hold(engine["proc"], True)
                _segment(engine, pg, work, f"w{mode}{n}", n, 1.0, 0.5)
            segs: dict[str, list[dict]] = {"off": [], "on": []}
            for k in range(args.pairs):
                for mode in (("off", "on") if k % 2 == 0 else ("on", "off")):
                    other = "on" if mode == "off" else "off"
                    _hold(engines[other]["proc"], False)
                    _hold(engines[mode]["proc"], True)
                    seg = _segment(engines[mode], pg, work, f"a{mode}{n}x{k}", n, args.segment, 0.5)
                    segs[mode].append(seg)
                    print(f"  pair {k:2} {mode:3} conns={n:3} {seg['msgs_per_s']:>8} msg/s "
                          f"p50={seg['p50_ms']} p99={seg['p99_ms']} codes={seg['ack_codes']}", flush=True)
            _hold(engines["on"]["proc"], True)
            counts = asyncio.run(_sql(engines["on"]["url"],
                                      "SELECT status, count(*) AS n FROM outbox GROUP BY 1"))
        summary: dict[str, dict] = {}
        for mode, got in segs.items():
            lat = sorted(x for seg in got for x in seg["latencies"])
            answered = sum(seg["answered"] for seg in got)
            codes: dict[str, int] = {}
            for seg in got:
                for code, count in seg["ack_codes"].items():
                    codes[code] = codes.get(code, 0) + count
            summary[mode] = row = {
                "notify": mode, "connections": n, "segments": len(got),
                "msgs_per_s": round(len(lat) / sum(seg["seconds"] for seg in got), 1),
                "p50_ms": _pct(lat, 0.50), "p99_ms": _pct(lat, 0.99), "max_ms": _pct(lat, 1.0),
                "engine_us": round(1e6 * sum(seg["engine_s"] for seg in got) / answered),
                "pg_us": round(1e6 * sum(seg["pg_s"] for seg in got) / answered),
                "loadgen_us": round(1e6 * sum(seg["loadgen_s"] for seg in got) / len(lat)),
                "ack_codes": codes,
                "texts": ", ".join(f"{c['status']} {c['n']}" for c in counts) if mode == "on" else "-"}
            rows.append(row)
        off, on = summary["off"], summary["on"]
        for key, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
            pairs = sorted(100 * (a[key] - b[key]) / b[key]
                           for a, b in zip(segs["on"], segs["off"], strict=True))
            lines.append(
                f"- {n} connection(s), {label} over all {args.pairs} segments of each: notify on is "
                f"{100 * (on[key] - off[key]) / off[key]:+.1f} % vs off (target: within 10 %); "
                f"pair by pair median {_middle(pairs):+.1f} % (range {pairs[0]:+.1f} to {pairs[-1]:+.1f} %)")
        lines.append(
            f"- {n} connection(s), CPU per message: engine {off['engine_us']} → {on['engine_us']} µs, "
            f"PostgreSQL {off['pg_us']} → {on['pg_us']} µs (off → on); load generator "
            f"{off['loadgen_us']} → {on['loadgen_us']} µs (the control)")
    return rows, lines


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
    ap.add_argument("--method", choices=("alternate", "runs"), default="alternate",
                    help="alternate: both engines up, the load switching between them every "
                         "--segment seconds; runs: one engine per run, --rounds runs of each")
    ap.add_argument("--pairs", type=int, default=15, help="alternate: off/on segment pairs")
    ap.add_argument("--segment", type=float, default=3.0, help="alternate: seconds of load per segment")
    ap.add_argument("--rounds", type=int, default=2,
                    help="runs: runs per mode and connection count, interleaved off-on-on-off")
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
    lines: list[str] = []
    try:
        if args.method == "alternate":
            rows, lines = alternate(args, conns, admin, postmaster, work,
                                    twilio.env() if twilio is not None else {})
        for n in conns if args.method == "runs" else ():
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

    for n in conns if args.method == "runs" else ():
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
    alt = args.method == "alternate"
    opts = (f" --pairs {args.pairs} --segment {args.segment:g}" if alt else
            f" --method runs --duration {args.duration:g} --rounds {args.rounds}")
    how = (f"both engines (off and on) up at once on databases of their own, the load switching "
           f"between them every {args.segment:g} s ({args.pairs} pairs, in the order off-on, on-off, "
           "...; 0.5 s of each segment unrecorded), so the machine's drift falls on both alike; the "
           "engine not under load has its outbox worker process stopped (SIGSTOP), so the off figures "
           "carry none of the on engine's sending; p50/p99 over all segments of a mode, and pair by "
           "pair; CPU per message: engine process (with its outbox worker process), all PostgreSQL "
           "processes and the load generator while recording, per message answered"
           if alt else
           "fresh database per run; runs interleaved off, on, on, off; CPU per message: engine "
           "process (with its outbox worker process), all PostgreSQL processes and the load "
           "generator over a window mid-run, per message answered in it")
    body = "\n".join([
        "## Notify: durable channel ACK latency with notify on vs off (issue: notify)",
        "",
        f"Measured {harness.stamp()} on {harness.machine()}.",
        f"Command: `python bench/run_notify_bench.py{opts}"
        f"{' --dry-run' if args.dry_run else ''}{f' --sms-rate {args.sms_rate}' if args.sms_rate else ''}"
        f" --channel {args.channel}`"
        + (" — `channels/default.yaml` as shipped (parse, validate, conflict_check, persist, notify), "
           "off = the same file without notify, against a " if args.channel == "shipped" else
           " — parse, validate, persist (+ notify) against a ")
        + f"private embedded PostgreSQL (fsync on; {how}); "
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
                             *([("segments", "segments")] if alt else []), ("msgs_per_s", "msgs/s"),
                             ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
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
