"""Notify benchmark: ACK latency of the durable channel with the notify stage on vs off, in one run.

Run from the repository root:  python bench/run_notify_bench.py [--pairs 60] [--slice 0.5]
[--connections 1,16] [--channel shipped|lean] [--dry-run] [--no-write]
[--method runs --duration 10 --rounds 2] | --pool LAT.json ...

``--channel shipped`` (the default) runs the durable channel, ``channels/default.yaml`` as
shipped (parse → validate → conflict_check → persist → notify), "off" being the same file without
its ``notify`` line; ``--channel lean`` runs parse → validate → persist (+ notify), the stricter
comparison (the text's cost against a smaller whole). Either runs against one private embedded
PostgreSQL, fsync on; the message is the durable bench's (a new booking each, rooms, staff and
patients of the engine's own).

The default method (``alternate``) starts both engines at once, each on a database of its own,
and one load generator process loads them in turn, ``--slice`` seconds each, ``--pairs`` times
(off-on, then on-off, ...; ``bench/loadgen.py --alternate``): this machine's speed drifts, over
seconds and less, by more than the difference measured, and what drifts slower than a pair of
turns falls on both modes alike. The engine not under load has its outbox worker process
stopped (SIGSTOP), so the off turns carry none of the on engine's sending (see ``alternate``).
The summary gives p50/p99 over all turns of a mode with a 95 % interval of each difference (a
block bootstrap over the turn pairs: one run's p99 moves by 10-20 % with the same code on
both sides), the median and middle half of the turn-by-turn differences of p50, and the difference
of p99 in each quarter of the run. ``--pool LAT.json ...`` gives the same p50/p99 differences and
intervals over the turns of several runs together, measuring nothing. Before the first turn the
new cluster writes and recycles its WAL segments (``harness.recycle_wal``), as a server that
has run for a while has them (``--new-wal``: not). ``--method runs`` is the earlier way: one
engine per run on a fresh database, ``--rounds`` runs of each mode interleaved off, on, on,
off, medians compared.

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
replace the ``notify`` section of BENCHMARKS.md. ``--baseline CHECKOUT`` compares code instead:
both engines with notify, the "off" one running CHECKOUT's code (``git worktree add`` of an
earlier commit), the same drift falling on both (printed, not written).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import asyncpg
import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench import harness
from bench import run_durable_bench as durable
from bench.loadgen import percentile

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


# The texts at the end of a run: by outbox status, and those still in the outbox's intake.
_WAITING = ("SELECT status, count(*) AS n FROM outbox GROUP BY 1 "
            "UNION ALL SELECT 'intake', count(*) FROM outbox_intake HAVING count(*) > 0")


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


def _workers(engine: psutil.Process) -> list[int]:
    """The engine's child processes (its outbox worker)."""
    return [c.pid for c in engine.children(recursive=True)]


SMS_RATE = 10.0      # RADSCHED_SMS_RATE's default (services._sms_numbers)
_DB_SQL = ("SELECT pid, datname, coalesce(nullif(application_name, ''), backend_type) AS who "
           "FROM pg_stat_activity WHERE datname IS NOT NULL")
_AUTOVACUUM = ("SELECT relname, autovacuum_count AS v, autoanalyze_count AS a FROM pg_stat_user_tables "
               "WHERE autovacuum_count + autoanalyze_count > 0 ORDER BY relname")
_CHECKPOINTS = "SELECT checkpoints_timed + checkpoints_req AS n FROM pg_stat_bgwriter"


def alternate(args: argparse.Namespace, conns: list[int], admin: str, pg: psutil.Process,
              work: Path, twilio_env: dict[str, str], first: str = "off", details: bool = True
              ) -> tuple[list[dict], list[str]]:
    """Both engines up at once, on databases of their own; one load generator process loads
    them in turn, ``--slice`` seconds each (``bench/loadgen.py --alternate``), ``--pairs``
    times, in the order off-on, on-off, ...: a drift of the machine slower than a pair falls on
    both alike. The engine not under load has its outbox worker process stopped (SIGSTOP), so
    the off turns carry none of the on engine's sending; the on engine's worker sends its backlog
    during the on turns, at half the SMS rate (``--sms-rate``, default 10/s): it runs half the
    time and catches up at each turn, so per second of its turns it sends what it would at the
    full rate in steady running. CPU per message: each engine with its worker process, and
    each engine's PostgreSQL backends, over the whole run; PostgreSQL's background processes
    (WAL writer, checkpointer, autovacuum) are shared and given apart."""
    rows: list[dict] = []
    lines: list[str] = []
    for n in conns:
        with contextlib.ExitStack() as stack:
            engines: dict[str, dict] = {}
            # The engine started second gets its database second; autovacuum's launcher then
            # visits it later, and it has sometimes got one round more of the main tables.
            for mode in ("on", "off") if first == "on" else ("off", "on"):
                name = f"notify_alt_{mode}_{n}"
                durable.ensure_database(admin, name, reuse=False)
                url = durable.with_database(admin, name)
                # --baseline: both with notify, the "off" one on the code of another checkout.
                notify = (mode == "on" and not args.same) or bool(args.baseline)
                channel = (durable.shipped_channel(None if notify else "notify")
                           if args.channel == "shipped" else
                           CHANNEL.format(notify="  - notify\n" if notify else ""))
                # The on engine's worker runs during its turns only, half the time: at half the
                # rate it sends, per second of its turns, what it would at the rate steadily.
                rate = f"{float(args.sms_rate or SMS_RATE) / 2:g}"
                env = {"RADSCHED_OUTBOX_POLL_SECONDS": args.poll, "RADSCHED_DATA_DIR": str(work / name),
                       "RADSCHED_SMS_RATE": rate, **twilio_env}
                baseline = args.baseline if mode == "off" else None
                if baseline:
                    env["PYTHONPATH"] = str(baseline)
                cmd, env, port, mport = durable.engine_command(url, work, name, env, channel)
                if baseline:                          # -P: no working directory on sys.path,
                    cmd = [cmd[0], "-P", *cmd[1:]]    # so PYTHONPATH's checkout is imported
                proc = stack.enter_context(harness.server(cmd, port, env=env, log=work / f"{name}.log"))
                harness.wait_port(mport, 30, proc)
                engines[mode] = {"proc": psutil.Process(proc.pid), "port": port, "mport": mport,
                                 "url": url, "db": name}
            warm = _turns(engines, work, f"w{n}", n, 2, 0.5)      # first contact, not measured
            assert warm.returncode == 0, warm.stderr[-2000:]
            before = _reading(engines)
            # PostgreSQL CPU by database: backends are sampled every second, since the engine's
            # pool replaces a connection after 50,000 queries (a backend that ends takes its CPU
            # time into the postmaster's reaped-children total, attributed to no database).
            dbs: dict[int, tuple[str, str]] = {}
            pg0 = harness.pg_per_process(pg)
            checkpoints = _checkpoints(admin)
            seen, stop = dict(pg0), threading.Event()
            sampler = threading.Thread(target=_sample, args=(admin, pg, dbs, seen, stop), daemon=True)
            sampler.start()
            try:
                done = _turns(engines, work, f"a{n}", n, args.pairs, args.slice, args.rate)
            finally:
                stop.set()
                sampler.join()
            if done.returncode != 0:
                raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
            pg1 = harness.pg_per_process(pg)
            seen.update(pg1)
            checkpoints = _checkpoints(admin) - checkpoints
            after = _reading(engines)
            timed = {m: _means(after[m][2], before[m][2]) for m in engines}
            counts = {m: asyncio.run(_sql(engines[m]["url"], _WAITING)) for m in engines}
            vacuums = {m: asyncio.run(_sql(engines[m]["url"], _AUTOVACUUM)) for m in engines}
        result = json.loads(done.stdout.strip().splitlines()[-1])
        slices = json.loads((work / f"lat-a{n}.json").read_text())
        by_db: dict[str, float] = {}
        by_client: dict[str, dict[str, float]] = {}
        ended = sum(cpu for pid, cpu in seen.items() if pid and pid not in pg1)
        for pid, cpu in seen.items():     # pid 0: the postmaster and reaped children, less the
            key, who = dbs.get(pid, ("shared", ""))  # ended backends counted by database already
            spent = cpu - pg0.get(pid, 0.0) - (ended if pid == 0 else 0.0)
            by_db[key] = by_db.get(key, 0.0) + spent
            clients = by_client.setdefault(key, {})
            clients[who] = clients.get(who, 0.0) + spent
        answered = {m: max(1.0, after[m][0] - before[m][0]) for m in engines}
        shared_us = round(1e6 * by_db.get("shared", 0.0) / sum(answered.values()))
        summary: dict[str, dict] = {}
        for mode, side in (("off", "a"), ("on", "b")):
            got = result[side]
            summary[mode] = row = {
                "notify": mode, "connections": n, "turns": args.pairs, **got,
                "engine_us": round(1e6 * (after[mode][1] - before[mode][1]) / answered[mode]),
                "pg_us": round(1e6 * by_db.get(engines[mode]["db"], 0.0) / answered[mode]),
                "loadgen_us": got["cpu_us_per_msg"],
                "texts": ", ".join(f"{c['status']} {c['n']}" for c in counts[mode]) or "-"}
            rows.append(row)
        off, on = summary["off"], summary["on"]

        def pct(values: list[int], p: float) -> float:
            return percentile(sorted(values), p)

        bounds = _intervals(slices["a"], slices["b"], (0.5, 0.99))
        for p, label in ((0.5, "p50"), (0.99, "p99")):
            key = f"{label}_ms"
            # p50 turn by turn (pair k: off turn k and on turn k, next to each other in time);
            # p99 by quarter of the run (a turn holds too few replies for its own p99)
            step = 1 if p == 0.5 else max(1, args.pairs // 4)
            groups = [tuple([x for turn in slices[side][k:k + step] for x in turn] for side in "ab")
                      for k in range(0, args.pairs - step + 1, step)]
            changes = [100 * (pct(b, p) - pct(a, p)) / pct(a, p) for a, b in groups if a and b]
            diffs = sorted(changes)
            spread = (f"turn by turn median {_middle(diffs):+.1f} % (middle half "
                      f"{diffs[len(diffs) // 4]:+.1f} to {diffs[(3 * len(diffs)) // 4]:+.1f} %)"
                      if step == 1 else
                      "by quarter of the run " + ", ".join(f"{c:+.1f} %" for c in changes))
            lines.append(
                f"- {n} connection(s), {label} over all {args.pairs} turns of each: notify on is "
                f"{100 * (on[key] - off[key]) / off[key]:+.1f} % vs off ({_within(bounds, p)}; "
                f"target: within 10 %); {spread}")
        lines.append(
            f"- {n} connection(s), CPU per message: engine (with its worker process) "
            f"{off['engine_us']} → {on['engine_us']} µs, its PostgreSQL backends {off['pg_us']} → "
            f"{on['pg_us']} µs (off → on), PostgreSQL's background processes {shared_us} µs per "
            f"message of either; load generator "
            f"{off['loadgen_us']} → {on['loadgen_us']} µs (the control); PostgreSQL checkpoints "
            f"during the turns: {checkpoints}")
        if details:
            lines.append(
                f"- {n} connection(s), PostgreSQL CPU per message by client, off | on: " + " | ".join(
                    ", ".join(f"{who} {1e6 * cpu / answered[mode]:.0f} µs"
                              for who, cpu in sorted(by_client.get(engines[mode]["db"], {}).items()))
                    for mode in ("off", "on")))
        lines.append(
            f"- {n} connection(s), autovacuum runs by table (vacuum/analyze), off | on: " + " | ".join(
                ", ".join(f"{r['relname']} {r['v']}/{r['a']}" for r in vacuums[mode])
                for mode in ("off", "on")))
        if details:
            lines.append(
                f"- {n} connection(s), mean time per message inside the engine (its own histograms), "
                "off → on: " + ", ".join(
                    f"{name} {timed['off'].get(name, 0):.0f} → {timed['on'][name]:.0f} µs"
                    for name in timed["on"]))
    return rows, lines


def repeated(args: argparse.Namespace, conns: list[int], admin: str, pg: psutil.Process,
             work: Path, twilio_env: dict[str, str]) -> tuple[list[dict], list[str]]:
    """``alternate`` ``--runs`` times, each run on new databases and engines (its files in
    ``work/run<k>``), which engine comes first alternating from ``--first``; then p50 and p99
    over the turns of all runs, pooled, with their intervals (``pooled``). Each run keeps its
    p50/p99, CPU and autovacuum lines, not its ``details`` (PostgreSQL CPU by client, the
    engine's own histograms)."""
    if args.runs <= 1:
        return alternate(args, conns, admin, pg, work, twilio_env, args.first)
    rows: list[dict] = []
    lines: list[str] = []
    for k in range(1, args.runs + 1):
        first = args.first if k % 2 else {"off": "on", "on": "off"}[args.first]
        where = work / f"run{k}"
        where.mkdir()
        print(f"run {k} of {args.runs}, {first} first", flush=True)
        got_rows, got_lines = alternate(args, conns, admin, pg, where, twilio_env, first,
                                        details=False)
        rows += [{"run": f"{k} ({first} first)", **row} for row in got_rows]
        lines += [f"- run {k}:{line[1:]}" for line in got_lines]
    for n in conns:
        lines += [f"- {n} connection(s), all {args.runs} runs pooled:{line[1:]}"
                  for line in pooled([work / f"run{k}" / f"lat-a{n}.json"
                                      for k in range(1, args.runs + 1)])]
    return rows, lines


def _reading(engines: dict[str, dict]) -> dict[str, tuple[float, float, dict]]:
    """Per engine, from one scrape of its /metrics: messages answered so far, CPU seconds of it
    and its worker, and its stage, transaction and ACK histograms (``_timings``)."""
    out = {}
    for mode, engine in engines.items():
        text = durable.scrape(engine["mport"])
        out[mode] = (durable.answered(engine["mport"], text), durable.tree_cpu(engine["proc"]),
                     _timings(text))
    return out


def _timings(text: str) -> dict[str, tuple[float, float]]:
    """(sum, count) per stage, per store operation and for the ACK, from /metrics ``text``."""
    got: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        name_of = {"radsched_stage_duration_seconds": "stage",
                   "radsched_store_duration_seconds": "operation"}.get(family.name)
        if name_of is None and family.name != "radsched_ack_latency_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith(("_sum", "_count")):
                pair = got.setdefault(sample.labels.get(name_of) if name_of else "ack", [0.0, 0.0])
                pair[sample.name.endswith("_count")] += sample.value
    return {k: (v[0], v[1]) for k, v in got.items()}


def _means(now: dict[str, tuple[float, float]], since: dict[str, tuple[float, float]]) -> dict:
    """Mean µs per name between two ``_timings`` readings."""
    return {k: 1e6 * (v[0] - since.get(k, (0.0, 0.0))[0]) / max(1.0, v[1] - since.get(k, (0.0, 0.0))[1])
            for k, v in now.items()}


INTERVAL_ROUNDS, INTERVAL_BLOCK = 400, 10


def _within(bounds: dict[float, tuple[float, float]], p: float) -> str:
    """``bounds``' interval for ``p`` as the figures print it."""
    if p not in bounds:
        return "no interval: too few turns"
    return f"95 % interval {bounds[p][0]:+.1f} to {bounds[p][1]:+.1f} %"


def _change(a: list[int], b: list[int], p: float) -> float:
    """How much higher (%) the ``p`` quantile of sorted ``b`` is than that of sorted ``a``."""
    return 100 * (percentile(b, p) - percentile(a, p)) / percentile(a, p)


def _intervals(a_turns: list[list[int]], b_turns: list[list[int]], ps: tuple[float, ...],
               rounds: int = INTERVAL_ROUNDS, block: int = INTERVAL_BLOCK
               ) -> dict[float, tuple[float, float]]:
    """95 % interval of the change b vs a (%) at each quantile in ``ps``, by a block bootstrap:
    the turn pairs are cut into blocks of ``block`` consecutive pairs (a stall or an autovacuum
    round spans several turns), and each of ``rounds`` resamples draws as many blocks, with
    replacement, and pools their latencies per mode (a fixed seed: the same latencies give
    the same interval). Empty with fewer than four blocks: too few to resample."""
    pairs = list(zip(a_turns, b_turns, strict=True))
    blocks = [pairs[i:i + block] for i in range(0, len(pairs), block)]
    if len(blocks) < 4:
        return {}
    rng = random.Random(20261122)
    changes: dict[float, list[float]] = {p: [] for p in ps}
    for _ in range(rounds):
        drawn = [pair for _ in blocks for pair in rng.choice(blocks)]
        a = sorted(x for turn, _ in drawn for x in turn)
        b = sorted(x for _, turn in drawn for x in turn)
        for p in ps:
            changes[p].append(_change(a, b, p))
    out = {}
    for p, values in changes.items():
        values.sort()
        out[p] = (values[int(0.025 * rounds)], values[int(0.975 * rounds) - 1])
    return out


def pooled(files: list[Path]) -> list[str]:
    """p50 and p99 of notify on vs off over the turns of several runs' latency files
    (``lat-a<connections>.json`` in each run's work directory), with their intervals."""
    a_turns: list[list[int]] = []
    b_turns: list[list[int]] = []
    for path in files:
        got = json.loads(path.read_text())
        a_turns += got["a"]
        b_turns += got["b"]
    a, b = sorted(x for t in a_turns for x in t), sorted(x for t in b_turns for x in t)
    bounds = _intervals(a_turns, b_turns, (0.5, 0.99))
    lines = []
    for p, label in ((0.5, "p50"), (0.99, "p99")):
        lines.append(f"- {label} over {len(a_turns)} turns of each from {len(files)} run(s): off "
                     f"{percentile(a, p) / 1e6:.3f} ms, on {percentile(b, p) / 1e6:.3f} ms, notify on is "
                     f"{_change(a, b, p):+.1f} % vs off ({_within(bounds, p)}; target: within 10 %)")
    return lines


def _checkpoints(admin: str) -> int:
    """PostgreSQL's checkpoints so far (timed and requested)."""
    return asyncio.run(_sql(admin, _CHECKPOINTS))[0]["n"]


def _sample(admin: str, pg: psutil.Process, dbs: dict[int, tuple[str, str]], seen: dict[int, float],
            stop: threading.Event) -> None:
    """Every second until ``stop``: each backend's database and CPU seconds so far."""
    while True:
        dbs.update({r["pid"]: (r["datname"], r["who"]) for r in asyncio.run(_sql(admin, _DB_SQL))})
        seen.update(harness.pg_per_process(pg))
        if stop.wait(1.0):
            return


def _turns(engines: dict[str, dict], work: Path, tag: str, connections: int, pairs: int,
           slice_s: float, rate: float = 0.0) -> subprocess.CompletedProcess:
    """One load generator loading the off and on engines in turn (``loadgen.py --alternate``),
    each engine's worker stopped while the other has its turn; ``rate``: paced, that many
    messages a second during a turn (0: closed loop)."""
    off, on = engines["off"], engines["on"]
    pause = ",".join(map(str, _workers(off["proc"]))) + ":" + ",".join(map(str, _workers(on["proc"])))
    cmd = [*harness.pin(1), sys.executable, "-m", "bench.loadgen", "--port", str(off["port"]),
           "--alternate", str(on["port"]), "--connections", str(connections), "--pairs", str(pairs),
           "--slice", str(slice_s), "--pause", pause,
           "--template", f"{durable.template(work, tag + 'f')},{durable.template(work, tag + 'n')}",
           "--run-id", f"{tag}f,{tag}n", "--latencies", str(work / f"lat-{tag}.json"),
           "--rate", str(rate)]
    return subprocess.run(cmd, cwd=harness.ROOT, capture_output=True, text=True,
                          timeout=2 * pairs * slice_s + 120)


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
                         "--slice seconds; runs: one engine per run, --rounds runs of each")
    ap.add_argument("--pairs", type=int, default=60, help="alternate: turns of each engine")
    ap.add_argument("--slice", type=float, default=0.5, help="alternate: seconds per turn")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="alternate: a fixed load, messages a second during a turn, paced (latency "
                         "from each message's scheduled time); 0, the default: closed loop, "
                         "each connection sending its next message on its reply")
    ap.add_argument("--same", action="store_true",
                    help="alternate: the control of the method itself, both engines without notify "
                         "(the 'on' figures then show the method's own bias and spread)")
    ap.add_argument("--baseline", type=Path, default=None, metavar="CHECKOUT",
                    help="alternate: both engines with notify, the 'off' one running the code of "
                         "CHECKOUT (e.g. a git worktree of an earlier commit): the 'on' figures "
                         "compare this code with it (implies --no-write)")
    ap.add_argument("--no-autovacuum", action="store_true",
                    help="the bench's PostgreSQL without autovacuum: its rounds on the main tables "
                         "fall on one engine's turns or the other's by timing")
    ap.add_argument("--first", choices=("off", "on"), default="off",
                    help="alternate: whose database and engine are created first (the second has "
                         "at times got one autovacuum round more: alternate it over runs to pool)")
    ap.add_argument("--new-wal", action="store_true",
                    help="leave the new cluster's WAL as it is (no harness.recycle_wal before the "
                         "turns): each new 16 MB segment is then zero-filled while a commit waits, "
                         "as the bench ran before it recycled them")
    ap.add_argument("--rounds", type=int, default=2,
                    help="runs: runs per mode and connection count, interleaved off-on-on-off")
    ap.add_argument("--runs", type=int, default=1,
                    help="alternate: this many runs, each on new databases and engines, which "
                         "engine comes first alternating; their turns pooled at the end")
    ap.add_argument("--pool", type=Path, nargs="+", metavar="LATENCIES",
                    help="measure nothing: p50 and p99 of on vs off, with their intervals, over the "
                         "turns of earlier runs (their lat-a<connections>.json, in the work "
                         "directory each run prints at its end), pooled")
    args = ap.parse_args()
    if args.pool:
        print("\n".join(pooled(args.pool)))
        return
    if args.baseline is not None:
        if args.method != "alternate":
            ap.error("--baseline needs --method alternate")
        if not (args.baseline / "radsched_engine" / "cli.py").is_file():
            ap.error(f"--baseline {args.baseline}: no radsched_engine package there")
        args.baseline = args.baseline.resolve()
        args.no_write = True
    conns = [int(c) for c in args.connections.split(",")]
    work = Path(tempfile.mkdtemp(prefix="radsched-notify-bench-"))
    pg, admin = harness.start_postgres(work / "pg-data", core=1)
    postmaster = _postmaster(work / "pg-data" / "pg")
    if args.no_autovacuum:
        asyncio.run(_sql(admin, "ALTER SYSTEM SET autovacuum = off"))
        asyncio.run(_sql(admin, "SELECT pg_reload_conf()"))
    if not args.new_wal:
        print(f"WAL recycled before the turns: {harness.recycle_wal(admin)} segment files", flush=True)
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
            rows, lines = repeated(args, conns, admin, postmaster, work,
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
                counts = asyncio.run(_sql(url, _WAITING))
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
    opts = (f" --pairs {args.pairs} --slice {args.slice:g}{f' --rate {args.rate:g}' if args.rate else ''}"
            f"{' --same' if args.same else ''}{f' --baseline {args.baseline}' if args.baseline else ''}"
            f"{' --first on' if args.first == 'on' else ''}{f' --runs {args.runs}' if args.runs > 1 else ''}"
            if alt else
            f" --method runs --duration {args.duration:g} --rounds {args.rounds}")
    how = (f"both engines (off and on) up at once on databases of their own, one load generator "
           f"loading them in turn, {args.slice:g} s each"
           + (f" at a fixed {args.rate:g} messages a second, paced, latency counted from each "
              "message's scheduled time" if args.rate else "")
           + f" ({args.pairs} turns of each, in the order "
           "off-on, on-off, ...; the first 0.05 s of a turn unrecorded), so the machine's drift falls "
           "on both alike; the engine not under load has its outbox worker process stopped (SIGSTOP), "
           "so the off turns carry none of the on engine's sending, and the on engine's worker, "
           "running half the time at half the SMS rate, sends during its turns at the full rate"
           + (f"; all of this {args.runs} times, each run on new databases and engines, which "
              "engine is created first alternating, and p50/p99 also over the turns of all runs "
              "pooled; " if args.runs > 1 else "; ")
           + "p50/p99 over all turns of a mode, each difference with a 95 % interval (block "
           f"bootstrap: blocks of {INTERVAL_BLOCK} turn pairs, {INTERVAL_ROUNDS} resamples), p50 "
           "also turn by turn and p99 by quarter of the run; "
           "CPU per message over the whole "
           "run: each engine with its worker process, each engine's PostgreSQL backends, and the "
           "load generator during each mode's turns"
           if alt else
           "fresh database per run; runs interleaved off, on, on, off; CPU per message: engine "
           "process (with its outbox worker process), all PostgreSQL processes and the load "
           "generator over a window mid-run, per message answered in it")
    body = "\n".join([
        "## Notify: durable channel ACK latency with notify on vs off (issue: notify)",
        "",
        f"Measured {harness.stamp()} on {harness.machine()}.",
        *([f"**Baseline run:** both engines with notify; \"off\" runs the code of {args.baseline}, "
           "\"on\" this checkout's.", ""] if args.baseline else []),
        f"Command: `python bench/run_notify_bench.py{opts}"
        f"{' --dry-run' if args.dry_run else ''}{f' --sms-rate {args.sms_rate}' if args.sms_rate else ''}"
        f"{' --no-autovacuum' if args.no_autovacuum else ''}{' --new-wal' if args.new_wal else ''}"
        f" --channel {args.channel}`"
        + (" — `channels/default.yaml` as shipped (parse, validate, conflict_check, persist, notify), "
           "off = the same file without notify, against a " if args.channel == "shipped" else
           " — parse, validate, persist (+ notify) against a ")
        + "private embedded PostgreSQL (fsync on"
        + ("" if args.new_wal else
           f"; {harness.RECYCLE_WAL_SEGMENTS} WAL segments written and recycled before the first "
           "turn, as a running server has them: a new cluster zero-fills each new 16 MB segment "
           "while a commit waits, stalling a whole group commit every few seconds")
        + f"; {how}); "
        "message `bench/messages/siu_s12.hl7` with one technologist per room and the run's own "
        "rooms, staff and patients (a new booking each, nothing collides; one text each with notify "
        "on); "
        + ("texts recorded as dry runs (no credentials)." if args.dry_run else
           "the outbox worker sends the texts meanwhile through the twilio SDK to the local fake "
           "Twilio (`tests/fakes/fake_twilio.py`, its threads under SCHED_IDLE on core 1: it stands for "
           "a service on other machines) at the engine's SMS rate "
           f"(`RADSCHED_SMS_RATE`={args.sms_rate or 'default 10'}/s; texts beyond it wait in the "
           "outbox's intake, as they would at Twilio beyond a sender's throughput)."),
        "",
        harness.table(rows, [*([("run", "run")] if alt and args.runs > 1 else []),
                             ("notify", "notify"), ("connections", "connections"),
                             *([("turns", "turns")] if alt else []), ("msgs_per_s", "msgs/s"),
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
