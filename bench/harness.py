"""Shared benchmark plumbing: pinned processes, port waits, machine facts, BENCHMARKS.md sections."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "BENCHMARKS.md"


_CORES = sorted(os.sched_getaffinity(0))     # as this process found them, before any pinning


def cores() -> list[int]:
    return list(_CORES)


def pin(core: int | None) -> list[str]:
    """``taskset -c N`` when the machine has at least two cores and taskset exists."""
    if core is None or len(cores()) < 2 or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(cores()[core])]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {port} after {timeout}s")


@contextmanager
def server(cmd: list[str], port: int, *, env: dict[str, str] | None = None, core: int | None = 0,
           log: Path | None = None, startup: float = 120.0):
    """Run a server process pinned to ``core`` until the block ends; SIGTERM, then SIGKILL."""
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen([*pin(core), *cmd], env={**os.environ, **(env or {})}, cwd=ROOT,
                            stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_port(port, startup, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log:
            out.close()


def loadgen(port: int, connections: int, duration: float, template: Path | None = None,
            warmup: float = 2.0, core: int | None = 1, run_id: str | None = None) -> dict:
    cmd = [*pin(core), sys.executable, "-m", "bench.loadgen", "--port", str(port),
           "--connections", str(connections), "--duration", str(duration), "--warmup", str(warmup)]
    if template:
        cmd += ["--template", str(template)]
    if run_id:
        cmd += ["--run-id", run_id]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True,
                          timeout=duration + warmup + 120)
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> str:
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1048576:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (f"{model}, {os.cpu_count()} cores{mem}; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}")


def write_section(key: str, body: str) -> None:
    """Replace (or append) the section between ``<!-- bench:KEY:start/end -->`` in BENCHMARKS.md."""
    start, end = f"<!-- bench:{key}:start -->", f"<!-- bench:{key}:end -->"
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n\n" \
        "Figures written by the scripts in `bench/`; each section says the command that made it.\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS.write_text(text)


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    head = "| " + " | ".join(c[1] for c in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    lines = [head, sep]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c[0], "")) for c in columns) + " |")
    return "\n".join(lines)


def start_postgres(data_dir: Path, *, database: str = "postgres", core: int | None = 1):
    """A private embedded PostgreSQL (fsync on) whose server and backends run on ``core``.

    The server is started with this process's CPU mask narrowed to ``core`` (its postmaster,
    and every backend it forks later, inherit it). Returns ``(server, url)``; stop it with
    ``server.stop()``.
    """
    from radsched_engine.store import EmbeddedPostgres

    server = EmbeddedPostgres(data_dir, database=database)
    mask = os.sched_getaffinity(0)
    if core is not None and len(cores()) >= 2:
        os.sched_setaffinity(0, {cores()[core]})
    try:
        url = server.start()
    finally:
        os.sched_setaffinity(0, mask)
    return server, url


RECYCLE_WAL_SEGMENTS = 80


def recycle_wal(url: str, segments: int = RECYCLE_WAL_SEGMENTS) -> int:
    """Make a new cluster's WAL look like a running server's: write ``segments`` WAL segments
    (16 MB each, ~3 s) and checkpoint, so that the segments after the checkpoint are old ones
    renamed for reuse. A new cluster has none, and creates each new segment by writing 16 MB
    of zeros while a commit waits: a 30-60 ms stall of a whole group commit every few seconds
    under load, and more of them for whichever side of a comparison writes more WAL per
    message. A server that has been running reuses the segments its checkpoints free
    (``min_wal_size`` / ``max_wal_size``). Returns the WAL files there afterwards."""
    import asyncpg

    async def run() -> int:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("CREATE TABLE radsched_recycle_wal (x int)")
            for _ in range(segments):          # a switch needs some WAL written since the last
                await conn.execute("INSERT INTO radsched_recycle_wal VALUES (1)")
                await conn.fetchval("SELECT pg_switch_wal()")
            await conn.execute("DROP TABLE radsched_recycle_wal")
            await conn.execute("CHECKPOINT")
            return int(await conn.fetchval("SELECT count(*) FROM pg_ls_waldir()"))
        finally:
            await conn.close()

    return asyncio.run(run())


def pg_per_process(postmaster: Any) -> dict[int, float]:
    """CPU seconds of each live PostgreSQL process (0: the postmaster and the children it reaped)."""
    t = postmaster.cpu_times()
    found = {0: t.user + t.system + t.children_user + t.children_system}
    for child in postmaster.children():
        try:
            c = child.cpu_times()
        except psutil.Error:
            continue
        found[child.pid] = c.user + c.system
    return found


def pg_split(before: dict[int, float], after: dict[int, float],
             who: dict[int, str]) -> dict[str, float]:
    """PostgreSQL CPU seconds spent between two ``pg_per_process`` readings, by who ran it
    (``who``: pid → application name or process type, from ``pg_stat_activity``)."""
    split: dict[str, float] = {}
    for pid, cpu in after.items():
        name = "exited/postmaster" if pid == 0 else who.get(pid, "other")
        split[name] = split.get(name, 0.0) + cpu - before.get(pid, 0.0)
    return split


WHO_SQL = "SELECT pid, coalesce(nullif(application_name, ''), backend_type) AS who FROM pg_stat_activity"
