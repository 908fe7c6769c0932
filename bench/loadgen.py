"""MLLP load generator: N connections, one message in flight each, every ACK checked.

Each connection sends a message, waits for its reply, checks that MSA-2 equals the MSH-10 it
sent (and records MSA-1), then sends the next: at once (closed loop, the default), or with
``--rate R`` at its next scheduled time, the connections together sending R messages a second
(each every N/R s, staggered), the latency then counted from the scheduled time (a reply later
than the next schedule delays that send, and the delay counts in its latency). Prints one JSON
object with throughput and latency percentiles. Messages come from a template file with placeholders:
``{cid}`` a unique control id, ``{n}`` a global sequence number, ``{start}`` an HL7 timestamp
derived from ``{n}`` (distinct slots), ``{room}`` one of 40 rooms. ``--latencies FILE`` also
writes every recorded latency (ns, JSON list), for a caller that pools several runs.

    python -m bench.loadgen --port 8661 --connections 16 --duration 10 --template bench/messages/siu_s12.hl7
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from radsched_engine.mllp.framing import FrameDecoder, encode

_PLACEHOLDER = re.compile(r"\{(cid|n|start|room)\}")
_EPOCH = datetime(2027, 1, 4, 7, 0, tzinfo=UTC)


class Template:
    def __init__(self, text: str, run_id: str) -> None:
        text = text.replace("\r\n", "\r").replace("\n", "\r")
        if not text.endswith("\r"):
            text += "\r"
        self.parts = _PLACEHOLDER.split(text)
        self.run_id = run_id
        self._starts: dict[int, str] = {}

    def _start(self, slot: int) -> str:
        text = self._starts.get(slot)
        if text is None:
            text = (_EPOCH + timedelta(minutes=30 * slot)).strftime("%Y%m%d%H%M%S+0000")
            self._starts = {slot: text}     # slots only move forward: keep the latest one
        return text

    def render(self, conn: int, seq: int, n: int) -> tuple[bytes, bytes]:
        cid = f"{self.run_id}-{conn}-{seq}"
        values = {"cid": cid, "n": str(n), "start": self._start(n // 40), "room": f"ROOM{n % 40:02d}"}
        out = [p if i % 2 == 0 else values[p] for i, p in enumerate(self.parts)]
        return "".join(out).encode(), cid.encode()


class Stats:
    def __init__(self) -> None:
        self.latencies: list[int] = []
        self.codes: dict[str, int] = {}
        self.mismatches = 0
        self.closed = 0
        self.counter = 0
        self.recording = False


class Side:
    """One server of an alternating run: its connections send only while it is ``active``."""

    def __init__(self, name: str, template: Template, pause: list[int]) -> None:
        self.name, self.template, self.pause = name, template, pause
        self.stats = Stats()
        self.active = False
        self.idle: list[LoadConnection] = []
        self.conns: list[LoadConnection] = []
        self.slices: list[list[int]] = []
        self.cpu = 0.0
        self.seconds = 0.0

    def start(self) -> None:
        self.active = True
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.send_next()

    async def drained(self) -> None:
        """Every connection has its reply (none in flight)."""
        while any(c.waiting for c in self.conns):
            await asyncio.sleep(0.0002)


class LoadConnection(asyncio.Protocol):
    def __init__(self, idx: int, template: Template, stats: Stats, stop: asyncio.Event,
                 done: asyncio.Future, side: Side | None = None, pace: tuple[int, int] = (0, 0)) -> None:
        self.idx, self.template, self.stats, self.stop, self.done = idx, template, stats, stop, done
        self.side = side
        self.every, self.offset = pace      # ns between this connection's sends, its stagger (0: closed loop)
        self.due = 0                        # the next send's scheduled time (ns; 0: from now)
        self.decoder = FrameDecoder(16 * 1024 * 1024)
        self.seq = 0
        self.expected = b""
        self.sent_at = 0
        self.waiting = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.send_next()

    def send_next(self) -> None:
        """Send the next message: at once, or when paced at its scheduled time (then it comes
        back here, to find its server's turn perhaps over meanwhile)."""
        self.waiting = False
        if self.stop.is_set():
            self.transport.close()
            return
        if self.side is not None and not self.side.active:
            self.due = 0
            self.side.idle.append(self)
            return
        self.waiting = True
        now = time.perf_counter_ns()
        if self.every:
            if not self.due:
                self.due = now + self.offset
            if self.due > now:
                asyncio.get_running_loop().call_later((self.due - now) / 1e9, self.send_next)
                return
            now, self.due = self.due, self.due + self.every    # latency from the schedule
        self.seq += 1
        self.stats.counter += 1
        payload, self.expected = self.template.render(self.idx, self.seq, self.stats.counter)
        self.sent_at = now
        self.transport.write(encode(payload))

    def data_received(self, data: bytes) -> None:
        for frame in self.decoder.feed(data):
            if not isinstance(frame, bytes):
                continue
            now = time.perf_counter_ns()
            sep = frame[3:4] or b"|"
            start = frame.find(b"\rMSA" + sep) + 1
            end = frame.find(b"\r", start)
            fields = frame[start:end if end > 0 else None].split(sep) if start else []
            code = fields[1].decode() if len(fields) > 1 else "??"
            if len(fields) < 3 or fields[2] != self.expected:
                self.stats.mismatches += 1
            if self.stats.recording:
                self.stats.latencies.append(now - self.sent_at)
                self.stats.codes[code] = self.stats.codes.get(code, 0) + 1
            self.send_next()

    def connection_lost(self, exc) -> None:
        if not self.stop.is_set():
            self.stats.closed += 1
        if not self.done.done():
            self.done.set_result(None)


async def run(host: str, port: int, connections: int, duration: float, warmup: float,
              template: Template, latencies: Path | None = None, rate: float = 0.0) -> dict:
    stats, stop = Stats(), asyncio.Event()
    dones: list[asyncio.Future] = []
    await _connect(host, port, connections, template, stats, stop, dones, rate=rate)
    await asyncio.sleep(warmup)
    stats.recording = True
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.sleep(duration)
    stats.recording = False
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    stop.set()
    await asyncio.wait(dones, timeout=10)
    lat = sorted(stats.latencies)
    if latencies is not None:
        latencies.write_text(json.dumps(lat))
    return {"connections": connections, **summary(lat, elapsed, stats, cpu)}


async def _connect(host: str, port: int, connections: int, template: Template, stats: Stats,
                   stop: asyncio.Event, dones: list[asyncio.Future],
                   side: Side | None = None, rate: float = 0.0) -> list[LoadConnection]:
    """Open ``connections`` load connections (each starts sending at once; with ``rate``, all
    together that many messages a second, staggered); their futures, done when they close, are
    added to ``dones``."""
    loop = asyncio.get_running_loop()
    every = round(connections / rate * 1e9) if rate else 0
    conns = []
    for i in range(connections):
        fut = loop.create_future()
        dones.append(fut)
        pace = (every, every * i // connections)
        _, conn = await loop.create_connection(
            lambda i=i, f=fut, p=pace: LoadConnection(i, template, stats, stop, f, side, p), host, port)
        conns.append(conn)
    return conns


def percentile(lat: list[int], p: float) -> float:
    """The ``p`` quantile of sorted ``lat`` (nan when empty)."""
    return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")


def summary(lat: list[int], seconds: float, stats: Stats, cpu: float) -> dict:
    """What a run prints: throughput, latency percentiles (ms) of sorted ``lat`` (ns), ACK codes,
    and this process's CPU per message (``cpu`` seconds over the recorded time)."""
    count = len(lat)
    return {"messages": count, "seconds": round(seconds, 3),
            "msgs_per_s": round(count / seconds, 1) if seconds else None,
            "p50_ms": round(percentile(lat, 0.50) / 1e6, 3), "p99_ms": round(percentile(lat, 0.99) / 1e6, 3),
            "max_ms": round(lat[-1] / 1e6, 3) if count else None, "ack_codes": stats.codes,
            "mismatched_msa2": stats.mismatches, "closed_by_server": stats.closed,
            "cpu_us_per_msg": round(cpu / count * 1e6, 1) if count else None}


async def alternate(host: str, ports: tuple[int, int], connections: int, pairs: int, slice_s: float,
                    lead: float, sides: tuple[Side, Side], rate: float = 0.0) -> dict:
    """Both servers loaded in turn, ``slice_s`` seconds each (pairs in the order a-b, b-a, ...),
    the first ``lead`` seconds of a slice unrecorded; before a side's slice the other side's
    ``pause`` processes are stopped (SIGSTOP) and its own let go (SIGCONT)."""
    stop = asyncio.Event()
    dones: list[asyncio.Future] = []
    for side, port in zip(sides, ports, strict=True):
        side.conns = await _connect(host, port, connections, side.template, side.stats, stop, dones,
                                    side, rate)
    try:
        for k in range(pairs):
            for side in (sides if k % 2 == 0 else sides[::-1]):
                other = sides[1] if side is sides[0] else sides[0]
                other.active = False
                await other.drained()
                _signal(other.pause, signal.SIGSTOP)
                _signal(side.pause, signal.SIGCONT)
                side.start()
                await asyncio.sleep(lead)
                side.stats.recording = True
                cpu, started = time.process_time(), time.perf_counter()
                await asyncio.sleep(slice_s - lead)
                side.stats.recording = False
                side.cpu += time.process_time() - cpu
                side.seconds += time.perf_counter() - started
                side.slices.append(side.stats.latencies)
                side.stats.latencies = []
    finally:
        for side in sides:
            _signal(side.pause, signal.SIGCONT)
            side.active = True
        stop.set()
        for side in sides:
            side.start()
    await asyncio.wait(dones, timeout=10)
    out = {}
    for side in sides:
        lat = sorted(x for sl in side.slices for x in sl)
        out[side.name] = summary(lat, side.seconds, side.stats, side.cpu)
    return out


def _signal(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--template", default=str(Path(__file__).parent / "messages" / "siu_s12.hl7"))
    ap.add_argument("--run-id", default=f"L{os.getpid()}")
    ap.add_argument("--latencies", type=Path, help="write every recorded latency (ns) here, JSON")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="messages a second of all connections together, paced (0: closed loop)")
    ap.add_argument("--alternate", type=int, metavar="PORT",
                    help="a second server: load the two in turn (--slice, --pairs); --template "
                         "and --run-id then take two values, comma-separated")
    ap.add_argument("--slice", type=float, default=0.5, help="--alternate: seconds per turn")
    ap.add_argument("--lead", type=float, default=0.05,
                    help="--alternate: seconds at the start of a turn not recorded")
    ap.add_argument("--pairs", type=int, default=20, help="--alternate: turns of each server")
    ap.add_argument("--pause", action="append", default=[], metavar="A_PIDS:B_PIDS",
                    help="--alternate: processes (comma-separated) stopped while the other "
                         "server has its turn (a server's background worker)")
    args = ap.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    if args.alternate is not None:
        templates, run_ids = args.template.split(","), args.run_id.split(",")
        pauses: tuple[list[int], list[int]] = ([], [])
        for spec in args.pause:
            for n, part in enumerate(spec.split(":")[:2]):
                pauses[n].extend(int(x) for x in part.split(",") if x)
        sides = tuple(Side(name, Template(Path(t).read_text(), r), pause)
                      for name, t, r, pause in zip(("a", "b"), templates, run_ids, pauses, strict=True))
        result = asyncio.run(alternate(args.host, (args.port, args.alternate), args.connections,
                                       args.pairs, args.slice, args.lead, sides,  # type: ignore[arg-type]
                                       args.rate))
        if args.latencies is not None:
            args.latencies.write_text(json.dumps({s.name: s.slices for s in sides}))
        print(json.dumps(result))
        return
    template = Template(Path(args.template).read_text(), args.run_id)
    result = asyncio.run(run(args.host, args.port, args.connections, args.duration, args.warmup, template,
                                 args.latencies, args.rate))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
