"""Durable-channel benchmark: the full default channel over MLLP, commit before every AA, fsync on.

Run from the repository root:
    python bench/run_durable_bench.py [--preload 1000000] [--duration 10] [--connections 1,16]
                                      [--url URL] [--no-write]

The engine runs ``channels/default.yaml`` unchanged (parse → validate → conflict_check → persist
→ notify) with no Twilio credentials (texts are queued in the same transaction and recorded as
dry runs by the outbox worker) and no Claude key. Each message is a new SIU^S12 booking
(``bench/messages/siu_s12.hl7``: 40 rooms, one technologist per room, a patient of its own, a
mobile number), so every booking is checked against its room, technologist and patient, stored
with its journal row and resources, and queues one text — all committed before the AA.

Placement on a 2-core machine: the engine is pinned to core 0; PostgreSQL (a private embedded
server, or ``--url``'s when it runs on this machine) and the load generator to core 1. Runs are
made on an empty database and on one holding ``--preload`` appointments (3 resource rows each,
``bench/store_bench.py: preload``). Besides throughput and latency, each row gives the CPU time
per message of the engine, PostgreSQL and the load generator over the measured window, and the
transactions per message (``pg_stat_database.xact_commit``: below 1 means group commit).
The figures replace the ``durable`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import asyncpg
import psutil

from bench import harness
from bench.store_bench import preload
from radsched_engine.store import migrate

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
_SAMPLE = re.compile(r"^radsched_messages_total\{[^}]*\} ([0-9.e+]+)$", re.M)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def shipped_channel(without: str | None = None) -> str:
    """``channels/default.yaml`` as shipped (the durable channel), with stage ``without`` taken
    out of its pipeline: the "off" side of an on/off comparison of that stage."""
    text = (REPO / "channels" / "default.yaml").read_text()
    if without is None:
        return text
    line = f"  - {without}\n"
    if line not in text:
        raise SystemExit(f"channels/default.yaml has no pipeline line {line.strip()!r}")
    return text.replace(line, "")


def template(work: Path, tag: str) -> Path:
    """The standard bench message with the technologist following the room, and rooms, staff and
    patients of run ``tag``'s own (runs share a database): no booking collides with another."""
    text = (ROOT / "messages" / "siu_s12.hl7").read_text()
    text = (text.replace("AIP|1|A|5678^RAD^TECH|", f"AIP|1|A|T{tag}{{room}}^RAD^TECH|")
            .replace("AIL|1|A|{room}^", f"AIL|1|A|{tag}{{room}}^").replace("MRN{n}^", f"MRN{tag}-{{n}}^"))
    path = work / f"siu_s12_{tag}.hl7"
    path.write_text(text)
    return path


async def _sql(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def postmaster(url: str) -> psutil.Process | None:
    """The PostgreSQL server process when it runs on this machine (else None)."""
    conn = await asyncpg.connect(url)
    try:                                    # (the backend must still be there to be looked at)
        backend = psutil.Process(await conn.fetchval("SELECT pg_backend_pid()"))
        return psutil.Process(backend.ppid()) if backend.name() == "postgres" else None
    except (psutil.Error, OSError):
        return None
    finally:
        await conn.close()


def tree_cpu(proc: psutil.Process | None) -> float:
    """CPU seconds of ``proc`` and its children, alive and reaped."""
    if proc is None:
        return 0.0
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            continue
    return total


def pin_tree(proc: psutil.Process | None, core: int) -> None:
    """Pin a server and its current children (later backends inherit the postmaster's mask)."""
    if proc is None or len(harness.cores()) < 2:
        return
    for p in [proc, *proc.children(recursive=True)]:
        try:
            p.cpu_affinity([harness.cores()[core]])
        except psutil.Error:
            pass


def scrape(metrics_port: int) -> str:
    """The engine's ``/metrics`` text."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def answered(metrics_port: int, text: str | None = None) -> float:
    """Messages the engine has answered (from ``text`` when given, else a scrape)."""
    return sum(float(v) for v in _SAMPLE.findall(scrape(metrics_port) if text is None else text))


async def commits(url: str) -> int:
    rows = await _sql(url, "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
    return int(rows[0]["xact_commit"])


def engine_command(url: str, work: Path, name: str, env_extra: dict[str, str],
                   channel: str | None = None) -> tuple[list[str], dict[str, str], int, int]:
    """(command, environment, MLLP port, metrics port) of an engine on database ``url`` with
    ``channel``'s YAML (default: ``channels/default.yaml`` as shipped), no Claude key and no
    Twilio credentials unless ``env_extra`` gives them."""
    channels = work / f"channels-{name}"
    channels.mkdir(exist_ok=True)
    if channel is None:
        shutil.copy(REPO / "channels" / "default.yaml", channels / "default.yaml")
    else:
        (channels / "default.yaml").write_text(channel)
    port, mport = harness.free_port(), harness.free_port()
    env = {"RADSCHED_CHANNELS_DIR": str(channels), "RADSCHED_DATABASE_URL": url,
           "RADSCHED_MLLP_LISTEN": f"127.0.0.1:{port}", "RADSCHED_METRICS_LISTEN": f"127.0.0.1:{mport}",
           "RADSCHED_DATA_DIR": str(work / "data"), "ANTHROPIC_API_KEY": "",
           "TWILIO_ACCOUNT_SID": "", "TWILIO_AUTH_TOKEN": "", **env_extra}
    return [sys.executable, "-m", "radsched_engine.cli", "run"], env, port, mport


def measure(url: str, pg: psutil.Process | None, work: Path, name: str, connections: int,
            duration: float, warmup: float, env_extra: dict[str, str], channel: str | None = None,
            template_path: Path | None = None) -> dict:
    """One engine run: start it pinned to core 0, load it from core 1, sample CPU mid-run.

    The engine's CPU is its process and its children's (the outbox worker process) together.

    ``channel``: the channel file's YAML (default: ``channels/default.yaml`` as shipped);
    ``template_path``: the load generator's message template (default: ``template``)."""
    cmd, env, port, mport = engine_command(url, work, name, env_extra, channel)
    with harness.server(cmd, port, env=env, log=work / f"{name}.log") as engine:
        harness.wait_port(mport, 30, engine)
        gen = subprocess.Popen(
            [*harness.pin(1), sys.executable, "-m", "bench.loadgen", "--port", str(port),
             "--connections", str(connections), "--duration", str(duration), "--warmup", str(warmup),
             "--template", str(template_path or template(work, f"{name}-{os.getpid()}")),
             "--run-id", f"{name}-{os.getpid()}"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        eng, lg = psutil.Process(engine.pid), psutil.Process(gen.pid)
        time.sleep(warmup + 0.5)
        window = max(1.0, duration - 1.0)
        before = (answered(mport), tree_cpu(eng), tree_cpu(pg), lg.cpu_times(),
                  asyncio.run(commits(url)), time.perf_counter())
        pg0 = harness.pg_per_process(pg) if pg is not None else {}
        time.sleep(window)
        after = (answered(mport), tree_cpu(eng), tree_cpu(pg), lg.cpu_times(),
                 asyncio.run(commits(url)), time.perf_counter())
        pg1 = harness.pg_per_process(pg) if pg is not None else {}
        who = {r["pid"]: r["who"] for r in asyncio.run(_sql(url, harness.WHO_SQL))}
        out, err = gen.communicate(timeout=duration + warmup + 120)
        if gen.returncode != 0:
            raise RuntimeError(f"load generator failed: {err[-2000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    n = max(1.0, after[0] - before[0])

    def cpu(t: psutil._common.pcputimes) -> float:   # type: ignore[name-defined]
        return t.user + t.system

    elapsed = after[5] - before[5]
    result.update(
        engine_us=f"{(after[1] - before[1]) / n * 1e6:.0f}",
        engine_busy=f"{100 * (after[1] - before[1]) / elapsed:.0f} %",
        pg_us=f"{(after[2] - before[2]) / n * 1e6:.0f}" if pg is not None else "n/a",
        loadgen_us=f"{(cpu(after[3]) - cpu(before[3])) / n * 1e6:.0f}",
        tx_per_msg=f"{(after[4] - before[4]) / n:.2f}",
        pg_split={k: round(1e6 * v / n) for k, v in sorted(harness.pg_split(pg0, pg1, who).items())
                  if round(1e6 * v / n)})
    return result


def add_run_args(ap: argparse.ArgumentParser, *, warmup: float) -> None:
    """The options every durable-path bench takes (run length, connections, server, engine env)."""
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=warmup)
    ap.add_argument("--connections", default="1,16")
    ap.add_argument("--url", help="PostgreSQL admin URL (role with CREATEDB); default: a private "
                                  "embedded server")
    ap.add_argument("--keep", action="store_true",
                    help="with --url: keep the preloaded database for the next run (and reuse it)")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for the engine")
    ap.add_argument("--no-write", action="store_true", help="print the section instead of writing it")


def ensure_database(admin: str, name: str, *, reuse: bool) -> None:
    """A new empty database ``name``; with ``reuse``, an existing one of that name is kept as it is."""
    if reuse and asyncio.run(_sql(admin, "SELECT 1 FROM pg_database WHERE datname = $1", name)):
        return
    asyncio.run(_sql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(_sql(admin, f'CREATE DATABASE "{name}"'))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preload", type=int, default=1_000_000, help="appointments stored for the second set")
    add_run_args(ap, warmup=3.0)
    args = ap.parse_args()
    conns = [int(c) for c in args.connections.split(",")]
    env_extra = dict(item.split("=", 1) for item in args.env)
    work = Path(tempfile.mkdtemp(prefix="radsched-durable-bench-"))
    embedded = None
    admin = args.url
    if not admin:
        embedded, admin = harness.start_postgres(work / "pg-data", core=1)
    pg = asyncio.run(postmaster(admin))
    pin_tree(pg, 1)
    rtt = asyncio.run(_round_trip_us(admin))
    rows: list[dict] = []
    sets = [("empty", 0)] + ([("preloaded", args.preload)] if args.preload else [])
    databases = []
    try:
        for label, count in sets:
            # With --keep, a preloaded database is kept (and found again by its name next time).
            name = f"durable_{label}_{count}" if args.keep else f"durable_{label}_{os.getpid()}"
            ensure_database(admin, name, reuse=bool(args.keep and count))
            if not (args.keep and count):
                databases.append(name)
            url = with_database(admin, name)
            asyncio.run(migrate(url))
            if count:
                seconds = asyncio.run(preload(url, count))
                print(f"preloaded {count:,} appointments in {seconds:.0f} s", flush=True)
                asyncio.run(_sql(url, "CHECKPOINT"))
            for n in conns:
                r = measure(url, pg, work, f"{label}-{n}", n, args.duration, args.warmup, env_extra)
                r["database"] = f"{count:,}" if count else "empty"
                rows.append(r)
                print(f"{label:9} conns={n:3} {r['msgs_per_s']:>9} msg/s p50={r['p50_ms']} ms "
                      f"p99={r['p99_ms']} ms engine={r['engine_us']} µs/msg ({r['engine_busy']}) "
                      f"pg={r['pg_us']} µs/msg loadgen={r['loadgen_us']} µs/msg "
                      f"tx/msg={r['tx_per_msg']} codes={r['ack_codes']}", flush=True)
    finally:
        for name in databases:
            try:
                asyncio.run(_sql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except Exception as exc:          # the server may already be gone
                print(f"could not drop {name}: {exc}", file=sys.stderr)
        if embedded is not None:
            embedded.stop()
            shutil.rmtree(work / "pg-data", ignore_errors=True)

    body = "\n".join([
        "## Durable channel: the full default channel over MLLP, commit before every AA (issue 3)",
        "",
        f"Measured {harness.stamp()} on {harness.machine()}.",
        f"Command: `python bench/run_durable_bench.py --preload {args.preload} --duration "
        f"{args.duration:g}` — `channels/default.yaml` as shipped (parse, validate, conflict_check, "
        "persist, notify; no Twilio credentials: texts queued in the transaction and recorded as dry "
        "runs; no Claude key) against "
        f"{'the PostgreSQL at --url' if args.url else 'a private embedded PostgreSQL 16 (pgserver)'} "
        f"with fsync and synchronous_commit on (`SELECT 1` round trip {rtt:.0f} µs). "
        "Each message is a new SIU^S12 booking (`bench/messages/siu_s12.hl7`, one technologist per "
        "room, a patient of its own): conflict-checked against its room, technologist and patient, "
        "stored with its journal row and 3 resource rows, one text queued. Engine pinned to core 0; "
        "PostgreSQL and the load generator (`bench/loadgen.py`, closed loop, one message in flight "
        "per connection, every MSA-2 checked) share core 1. CPU columns: CPU time per answered "
        "message over the measured window (engine process with its outbox worker process; "
        "PostgreSQL server and backends; load generator); transactions per message from "
        "`pg_stat_database` (below 1 = group commit).",
        "",
        harness.table(rows, [("database", "appointments stored"), ("connections", "connections"),
                             ("msgs_per_s", "msgs/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
                             ("max_ms", "max ms"), ("engine_us", "engine µs/msg"),
                             ("engine_busy", "engine core busy"), ("pg_us", "PostgreSQL µs/msg"),
                             ("loadgen_us", "loadgen µs/msg"), ("tx_per_msg", "commits/msg"),
                             ("ack_codes", "ACK codes")]),
    ])
    if args.no_write:
        print(body)
    else:
        harness.write_section("durable", body)
        print("wrote BENCHMARKS.md")
    print(f"logs in {work}")


async def _round_trip_us(url: str) -> float:
    conn = await asyncpg.connect(url)
    try:
        stmt = await conn.prepare("SELECT 1")
        began = time.perf_counter()
        for _ in range(2000):
            await stmt.fetchval()
        return (time.perf_counter() - began) / 2000 * 1e6
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
