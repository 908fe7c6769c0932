"""Abuse benchmark: a well-behaved sender's throughput while hostile peers work on the same channel.

Run from the repository root:  python bench/run_abuse_bench.py [--duration 10] [--scenarios all]
[--connections 1] [--prefill 20] [--database-url URL] [--no-write]

One engine on the durable channel (parse, validate, conflict_check, persist, notify; a private
embedded PostgreSQL unless ``--database-url``) runs pinned to one core; it is first filled by
``--prefill`` seconds of load, then VACUUM ANALYZE (until autovacuum's first pass, a minute
after a fresh database starts filling, its plans are those of empty tables and every run is
slower than the one before). Then runs alternate: a baseline without abuse, a scenario, a
baseline, ... a baseline. In a scenario run the abuser process starts, the load generator
(``bench/loadgen.py``, closed loop, every ACK checked, new bookings from ``bench/soak.py``'s
template with rooms, staff and patients of each run's own) measures, the abuser stops and prints
its counters; both share the other core. Each scenario is set against the mean of the baselines
just before and after it (the machine drifts). The figures replace the ``abuse`` section of
BENCHMARKS.md.

The abusers are the coroutines below, one per scenario; ``tests/hardening/test_abuse.py`` runs
the same ones, scaled down, and asserts the well-behaved sender completes its messages.
One abuser alone:  python bench/run_abuse_bench.py --abuser slowloris --port 8661
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import harness
from bench.loadgen import Template
from bench.soak import TEMPLATE as SOAK_TEMPLATE
from radsched_engine.mllp.framing import FrameDecoder, encode

MESSAGE = (Path(__file__).parent / "messages" / "siu_s12.hl7").read_text()
BASE = (MESSAGE.replace("\n", "\r").replace("{cid}", "ABUSE-1").replace("{n}", "1")
        .replace("{room}", "ROOM99").replace("{start}", "20270104070000+0000")).encode()
_TEMPLATE = Template(MESSAGE, "ABUSE")
_numbers = itertools.count(10_000_000)    # patients and slots far from the load generator's
MIB = 1024 * 1024
ANSWERS = {b"AA", b"AE", b"AR", b"CA", b"CE", b"CR"}
INVALID_UTF8 = (b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x28\x8c\x28", b"\x80", b"\xe9t\xe9")

Stats = dict[str, Any]
Abuser = Callable[..., Awaitable[Stats]]


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``wanted`` (up to the hard limit); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, OSError):
        pass


async def _drain_replies(reader: asyncio.StreamReader, into: Stats) -> bytes:
    """Read until the server closes; count the framed replies; return everything read."""
    decoder, seen = FrameDecoder(64 * MIB), bytearray()
    try:
        while data := await reader.read(65536):
            if len(seen) < 65536:
                seen += data[:4096]
            into["replies"] = into.get("replies", 0) + sum(
                1 for e in decoder.feed(data) if isinstance(e, bytes))
    except (ConnectionError, OSError):
        pass
    return bytes(seen)


def fresh(tag: str, pad: int = 0) -> bytes:
    """A new booking (own control id, patient, slot and room), MSH-3 padded with ``pad`` bytes
    (the ACK echoes MSH-3: a big answer for a small cost to the engine)."""
    n = next(_numbers)
    message, _ = _TEMPLATE.render(tag, n, n)   # type: ignore[arg-type]
    if pad:
        message = message.replace(b"|RIS|", b"|RIS" + b"X" * pad + b"|", 1)
    return message


# -- the abusers -------------------------------------------------------------------------------
async def slowloris(host: str, port: int, stop: asyncio.Event, *, connections: int = 1,
                    interval: float = 1.0, once: bool = False) -> Stats:
    """Connections that each send a frame one byte every ``interval`` seconds, never finishing.

    Reconnects when the server closes one (unless ``once``: then returns when all were closed).
    """
    stats: Stats = {"bytes": 0, "closed_by_server": 0, "connections": 0}
    payload = b"\x0b" + BASE

    async def one() -> None:
        while not stop.is_set():
            reader, writer = await asyncio.open_connection(host, port)
            stats["connections"] += 1
            i = 0
            try:
                while not stop.is_set():
                    writer.write(payload[i % len(payload):i % len(payload) + 1])
                    await writer.drain()
                    stats["bytes"] += 1
                    i += 1
                    try:
                        if not await asyncio.wait_for(reader.read(4096), interval):
                            stats["closed_by_server"] += 1
                            break
                    except TimeoutError:
                        pass
            except (ConnectionError, OSError):
                stats["closed_by_server"] += 1
            finally:
                await _close(writer)
            if once:
                return

    await asyncio.gather(*(one() for _ in range(connections)))
    return stats


async def huge_frame(host: str, port: int, stop: asyncio.Event, *, total: int = 100 * MIB,
                     chunk: int = 256 * 1024, rate: float | None = None, once: bool = False) -> Stats:
    """One frame of ``total`` bytes (an MSH, then a note that never ends), streamed as fast as
    the server takes it (or at ``rate`` bytes/s), reading the answer meanwhile. Repeats unless
    ``once``."""
    stats: Stats = {"frames": 0, "refused": 0, "sent": 0, "max_sent_per_frame": 0}
    head = b"\x0b" + BASE + b"NTE|1||"
    filler = b"x" * chunk
    while not stop.is_set():
        reader, writer = await asyncio.open_connection(host, port)
        stats["frames"] += 1
        answer = asyncio.ensure_future(_drain_replies(reader, {}))
        sent = 0
        try:
            writer.write(head)
            while sent < total and not answer.done() and not stop.is_set():
                writer.write(filler)
                await writer.drain()
                sent += chunk
                await asyncio.sleep(chunk / rate if rate else 0)
            if sent >= total:
                writer.write(b"\x1c\r")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        seen = await answer
        await _close(writer)
        stats["sent"] += sent
        stats["max_sent_per_frame"] = max(stats["max_sent_per_frame"], sent)
        if b"max_frame_bytes" in seen:
            stats["refused"] += 1
        if once:
            break
    return stats


async def no_end(host: str, port: int, stop: asyncio.Event, *, connections: int = 1,
                 once: bool = False) -> Stats:
    """A complete-looking message after a start block, and then nothing: no end block, ever."""
    stats: Stats = {"connections": 0, "closed_by_server": 0}

    async def one() -> None:
        while not stop.is_set():
            reader, writer = await asyncio.open_connection(host, port)
            stats["connections"] += 1
            try:
                writer.write(b"\x0b" + BASE)
                await writer.drain()
                read = asyncio.ensure_future(reader.read(4096))
                halt = asyncio.ensure_future(stop.wait())
                await asyncio.wait([read, halt], return_when=asyncio.FIRST_COMPLETED)
                halt.cancel()
                if read.done() and not read.exception() and not read.result():
                    stats["closed_by_server"] += 1
                read.cancel()
            except (ConnectionError, OSError):
                stats["closed_by_server"] += 1
            finally:
                await _close(writer)
            if once:
                return

    await asyncio.gather(*(one() for _ in range(connections)))
    return stats


async def idle(host: str, port: int, stop: asyncio.Event, *, count: int = 1000,
               ready: asyncio.Event | None = None) -> Stats:
    """``count`` connections that connect and say nothing, held until ``stop``."""
    raise_fd_limit(count + 256)
    stats: Stats = {"open": 0, "refused": 0, "closed_by_server": 0}
    writers: list[asyncio.StreamWriter] = []
    readers: list[asyncio.StreamReader] = []
    for start in range(0, count, 100):
        results = await asyncio.gather(*(asyncio.open_connection(host, port)
                                         for _ in range(start, min(count, start + 100))),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                stats["refused"] += 1
            else:
                readers.append(result[0])
                writers.append(result[1])
    stats["open"] = len(writers)
    if ready is not None:
        ready.set()
    await stop.wait()
    stats["closed_by_server"] = sum(1 for r in readers if r.at_eof())
    await asyncio.gather(*(_close(w) for w in writers))
    return stats


async def never_reads(host: str, port: int, stop: asyncio.Event, *, rcvbuf: int = 4096,
                      pad: int = 32768, once: bool = False) -> Stats:
    """Pipelines messages and never reads one ACK (a tiny receive buffer, so they back up).

    Each message carries ``pad`` bytes in MSH-3, which its ACK echoes: the kernel's buffers
    (megabytes on loopback) fill after a few hundred answers rather than tens of thousands.
    """
    stats: Stats = {"connections": 0, "sent": 0, "dropped_by_server": 0}
    while not stop.is_set():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        _reader, writer = await asyncio.open_connection(sock=sock)
        stats["connections"] += 1
        try:
            while not stop.is_set():
                writer.write(encode(fresh("NR", pad)))
                try:
                    await asyncio.wait_for(writer.drain(), 1.0)
                except TimeoutError:
                    if writer.transport.is_closing():
                        raise ConnectionResetError from None
                    continue
                stats["sent"] += 1
                if writer.transport.is_closing():
                    raise ConnectionResetError
        except (ConnectionError, OSError):
            stats["dropped_by_server"] += 1
        finally:
            await _close(writer)
        if once:
            break
    return stats


async def garbage(host: str, port: int, stop: asyncio.Event, *, rate: int = 1 * MIB,
                  total: int | None = None, seed: int = 7) -> Stats:
    """Random bytes (start and end blocks among them) at ``rate`` bytes/s; reads what comes back.

    ``frames`` counts the complete frames in what was sent (the engine owes each an answer);
    with ``total``, stops after that many bytes, half-closes and waits for every answer.
    Reconnects when the server closes the connection.
    """
    rng = random.Random(seed)
    stats: Stats = {"bytes": 0, "connections": 0, "frames": 0, "replies": 0}
    chunk = 4096
    while not stop.is_set() and (total is None or stats["bytes"] < total):
        reader, writer = await asyncio.open_connection(host, port)
        stats["connections"] += 1
        sent = FrameDecoder(MIB)
        replies = asyncio.ensure_future(_drain_replies(reader, stats))
        try:
            while not stop.is_set() and (total is None or stats["bytes"] < total):
                data = rng.randbytes(chunk)
                stats["frames"] += sum(1 for e in sent.feed(data) if isinstance(e, bytes))
                writer.write(data)
                await writer.drain()
                stats["bytes"] += chunk
                await asyncio.sleep(chunk / rate)
                if replies.done():
                    break
            if total is not None and not replies.done():
                writer.write_eof()            # the engine answers what it has, then closes
                await asyncio.wait_for(replies, 120)
        except (ConnectionError, OSError, TimeoutError):
            pass
        await _close(writer)
        replies.cancel()
    return stats


def field_positions(message: bytes) -> list[tuple[int, int]]:
    """(segment, field) of every field from MSH-3 on (MSH-1/2 are the delimiters themselves)."""
    lines = message.rstrip(b"\r").split(b"\r")
    return [(li, fi) for li, line in enumerate(lines) for fi in range(1, len(line.split(b"|")))
            if not (line.startswith(b"MSH") and fi < 2)]


def corrupt(message: bytes, position: tuple[int, int]) -> bytes:
    """``message`` with invalid UTF-8 appended to (or as) the field at ``position``."""
    lines = message.rstrip(b"\r").split(b"\r")
    li, fi = position
    fields = lines[li].split(b"|")
    bad = INVALID_UTF8[(li + fi) % len(INVALID_UTF8)]
    fields[fi] = fields[fi] + bad if fields[fi] else bad
    lines[li] = b"|".join(fields)
    return b"\r".join(lines) + b"\r"


async def non_utf8(host: str, port: int, stop: asyncio.Event, *, rate: float = 200.0,
                   once: bool = False) -> Stats:
    """New bookings with invalid UTF-8 in one field each, every field in turn; answers checked.

    With ``once``: each field once, then returns.
    """
    stats: Stats = {"sent": 0, "answers": {}, "unanswered": 0, "error_207": 0}
    positions = field_positions(fresh("NU"))
    reader, writer = await asyncio.open_connection(host, port)
    decoder = FrameDecoder(MIB)
    pending: list[bytes] = []
    n = 0
    try:
        while not stop.is_set():
            if once and n >= len(positions):
                break
            message = corrupt(fresh("NU"), positions[n % len(positions)])
            n += 1
            writer.write(encode(message))
            await writer.drain()
            stats["sent"] += 1
            while not pending:
                data = await asyncio.wait_for(reader.read(65536), 30)
                if not data:
                    raise ConnectionResetError
                pending.extend(e for e in decoder.feed(data) if isinstance(e, bytes))
            reply = pending.pop(0)
            msa = reply.split(b"\rMSA|", 1)[1].split(b"|") if b"\rMSA|" in reply else [b"??"]
            code = msa[0].split(b"\r")[0]
            stats["answers"][code.decode()] = stats["answers"].get(code.decode(), 0) + 1
            if code not in ANSWERS:
                stats["unanswered"] += 1
            if b"|207^" in reply or b"^207&" in reply:
                stats["error_207"] += 1
            await asyncio.sleep(1 / rate)
    except (ConnectionError, OSError, TimeoutError):
        stats["unanswered"] += 1
    finally:
        await _close(writer)
    return stats


ABUSERS: dict[str, tuple[Abuser, dict[str, Any], str]] = {
    "slowloris": (slowloris, {"connections": 50}, "50 connections, each sending a frame 1 byte/s"),
    "huge_frame": (huge_frame, {"rate": 100 * MIB},
                   "100 MiB frames, one after another, at 100 MiB/s (a saturated gigabit link)"),
    "no_end": (no_end, {"connections": 50}, "50 connections, each a frame without end block"),
    "idle": (idle, {"count": 1000}, "1,000 idle connections held open"),
    "never_reads": (never_reads, {}, "pipelines messages (32 KiB MSH-3, echoed), never reads an ACK"),
    "garbage": (garbage, {"rate": 64 * 1024},
                "64 KiB/s of random bytes: ~125 junk frames/s, each answered AR and journaled"),
    "non_utf8": (non_utf8, {"rate": 20.0},
                 "20 bookings/s, invalid UTF-8 in one field each, every field in turn"),
}


async def _run_abuser(name: str, host: str, port: int) -> Stats:
    fn, options, _ = ABUSERS[name]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    if name == "idle":
        ready = asyncio.Event()
        task = asyncio.ensure_future(fn(host, port, stop, ready=ready, **options))
        await asyncio.wait([task, asyncio.ensure_future(ready.wait())],
                           return_when=asyncio.FIRST_COMPLETED)
    else:
        task = asyncio.ensure_future(fn(host, port, stop, **options))
        await asyncio.sleep(0.5)
    print("ready", flush=True)
    return await task


# -- the benchmark -----------------------------------------------------------------------------
CHANNEL = """\
listen: ${RADSCHED_MLLP_LISTEN}
timezone: UTC
limits: {max_frame_bytes: 1048576, frame_timeout: 30, idle_timeout: 600,
         max_connections: 1100, write_timeout: 30}
pipeline:
  - parse
  - validate
  - conflict_check
  - persist
  - notify
"""


def _abuser_process(name: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([*harness.pin(1), sys.executable, __file__, "--abuser", name,
                             "--port", str(port)], cwd=harness.ROOT, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"abuser {name} did not start: {line!r}")
    return proc


def _stop_abuser(proc: subprocess.Popen) -> Stats:
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    lines = [ln for ln in (out or "").splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


async def _analyze(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


def _template(work: Path, run: int) -> Path:
    """The soak booking with rooms, staff and patients of this run alone: runs do not overlap."""
    path = work / f"booking-{run}.hl7"
    path.write_text(SOAK_TEMPLATE.replace("{room}", f"R{run}-{{room}}")
                    .replace("MRN{n}", f"MRN{run}-{{n}}"))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--prefill", type=float, default=20.0,
                    help="seconds of load before the first measurement (fills the fresh tables)")
    ap.add_argument("--connections", type=int, default=1, help="well-behaved connections")
    ap.add_argument("--scenarios", default="all", help=f"comma list of {', '.join(ABUSERS)}")
    ap.add_argument("--database-url", default="", help="an empty database (default: embedded)")
    ap.add_argument("--no-write", action="store_true", help="print the section instead of writing it")
    ap.add_argument("--abuser", choices=sorted(ABUSERS), help=argparse.SUPPRESS)
    ap.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.abuser:
        print(json.dumps(asyncio.run(_run_abuser(args.abuser, args.host, args.port))), flush=True)
        return
    names = list(ABUSERS) if args.scenarios == "all" else args.scenarios.split(",")
    raise_fd_limit(4096)
    work = Path(tempfile.mkdtemp(prefix="radsched-abuse-bench-"))
    pg = None
    url = args.database_url
    if not url:
        from radsched_engine.store import EmbeddedPostgres

        pg = EmbeddedPostgres(work / "pg-data")
        url = pg.start()
    (work / "channels").mkdir()
    (work / "channels" / "scheduling.yaml").write_text(CHANNEL)
    rows: list[dict[str, Any]] = []
    baselines: list[float] = []
    n = args.connections
    port = harness.free_port()
    env = {"RADSCHED_CHANNELS_DIR": str(work / "channels"), "RADSCHED_DATABASE_URL": url,
           "RADSCHED_MLLP_LISTEN": f"127.0.0.1:{port}", "RADSCHED_DATA_DIR": str(work / "data"),
           "RADSCHED_METRICS_LISTEN": f"127.0.0.1:{harness.free_port()}"}
    try:
        with harness.server([sys.executable, "-m", "radsched_engine.cli", "run"], port, env=env,
                            log=work / "engine.log"):
            if args.prefill > 0:
                harness.loadgen(port, 8, args.prefill, template=_template(work, 0), warmup=0,
                                run_id="PREFILL")
                asyncio.run(_analyze(url))      # what autovacuum would do within its first minute
            runs = [x for name in names for x in ("baseline", name)] + ["baseline"]
            for i, name in enumerate(runs, start=1):
                proc = _abuser_process(name, port) if name != "baseline" else None
                try:
                    r = harness.loadgen(port, n, args.duration, template=_template(work, i),
                                        warmup=args.warmup, run_id=f"G{i}")
                finally:
                    stats = _stop_abuser(proc) if proc is not None else {}
                print(f"{name:12} {r['msgs_per_s']:>9} msg/s p50={r['p50_ms']} ms p99={r['p99_ms']} "
                      f"ms codes={r['ack_codes']} bad_msa2={r['mismatched_msa2']} "
                      f"closed={r['closed_by_server']} abuser={stats}", flush=True)
                if proc is None:
                    baselines.append(r["msgs_per_s"])
                else:
                    rows.append({"scenario": name, **r, "abuser": ABUSERS[name][2],
                                 "before": baselines[-1],
                                 "stats": json.dumps(stats, separators=(",", ":"))})
    finally:
        if pg is not None:
            pg.stop()
            shutil.rmtree(work / "pg-data", ignore_errors=True)
    for row, after in zip(rows, baselines[1:], strict=True):
        base = (row["before"] + after) / 2
        row["baseline"] = f"{base:.1f}"
        row["share"] = f"{100 * row['msgs_per_s'] / base:.0f} %" if base else "-"
    body = "\n".join([
        "## Abuse: a well-behaved sender's throughput while hostile peers work (issue: hardening)",
        "",
        f"Measured {harness.stamp()} on {harness.machine()}.",
        f"Command: `python bench/run_abuse_bench.py --duration {args.duration:g} --connections {n}` — "
        "one engine on the durable channel (parse, validate, conflict_check, persist, notify; "
        + ("the given PostgreSQL" if args.database_url else "a private embedded PostgreSQL")
        + f", first filled by {args.prefill:g} s of load, then VACUUM ANALYZE) pinned to one core, "
        "limits as shipped "
        "except `max_connections: 1100`; the well-behaved sender is `bench/loadgen.py` "
        f"({n} connection(s), closed loop, every MSA-2 checked, new bookings from "
        "`bench/soak.py`'s template, rooms, staff and patients of its own in each run), sharing "
        "the other core with the abuser process. Each scenario's baseline is the mean of the runs "
        "without abuse just before and after it (all baselines, msg/s: "
        f"{', '.join(str(b) for b in baselines)}). Target: at least 80 % of the baseline in every "
        "scenario.",
        "",
        harness.table(rows, [("scenario", "scenario"), ("abuser", "abuser"),
                             ("msgs_per_s", "well-behaved msgs/s"), ("baseline", "baseline msgs/s"),
                             ("share", "of baseline"),
                             ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("ack_codes", "ACK codes"),
                             ("closed_by_server", "good conns closed"), ("stats", "abuser counters")]),
    ])
    if args.no_write:
        print(body)
    else:
        harness.write_section("abuse", body)
        print("wrote BENCHMARKS.md")
    print(f"logs in {work}")


if __name__ == "__main__":
    main()
