"""Soak: a long run of messages through the durable channel with the engine's RSS sampled.

Run from the repository root:  python bench/soak.py [--messages 1000000] [--connections 8]
[--database-url URL] [--no-write]

The engine (``radsched-engine run``, the durable channel: parse, validate, conflict_check,
persist, notify; log level info to /dev/null) runs pinned to one core against a private embedded
PostgreSQL (unless ``--database-url``); this script sends from the other core: closed loop,
``--connections`` connections, every message a new booking (own control id, patient and slot;
40 rooms, one technologist each), every ACK checked (MSA-1 AA and MSA-2 = the MSH-10 sent).
It reads the engine's VmRSS from ``/proc/<pid>/status`` every ``--sample-every`` seconds. The
curve and its summary replace the ``soak`` section of BENCHMARKS.md.
``tests/hardening/test_soak.py`` runs the same sender for a short run and bounds the growth.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import harness
from bench.loadgen import Template
from radsched_engine.mllp.framing import FrameDecoder, encode

# The ACK bench's booking, with one technologist per room (AIP) instead of one for every room:
# 40 rooms booked at once by one person would make every booking a staff double booking and
# serialise them all on that person's lock, which is not what a long run should measure.
TEMPLATE = ((Path(__file__).parent / "messages" / "siu_s12.hl7").read_text()
            .replace("|5678^RAD^TECH|", "|{room}T^RAD^TECH|"))
CHANNEL = """\
listen: ${RADSCHED_MLLP_LISTEN}
timezone: UTC
pipeline:
  - parse
  - validate
  - conflict_check
  - persist
  - notify
"""


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Progress:
    """What the sender has done so far."""

    total: int
    sent: int = 0
    answered: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    mismatched: int = 0
    closed: int = 0


class _Sender(asyncio.Protocol):
    """One closed-loop connection: send, wait for the ACK, check it, send the next."""

    def __init__(self, idx: int, template: Template, progress: Progress, offset: int,
                 done: asyncio.Future[None]) -> None:
        self.idx, self.template, self.progress, self.offset, self.done = idx, template, progress, offset, done
        self.decoder = FrameDecoder(16 * 1024 * 1024)
        self.expected = b""
        self.waiting = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._next()

    def _next(self) -> None:
        p = self.progress
        if p.sent >= p.total:
            self.transport.close()  # type: ignore[union-attr]
            return
        p.sent += 1
        n = self.offset + p.sent
        payload, self.expected = self.template.render(self.idx, n, n)
        self.waiting = True
        self.transport.write(encode(payload))  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        for frame in self.decoder.feed(data):
            if not isinstance(frame, bytes):
                continue
            p = self.progress
            start = frame.find(b"\rMSA|") + 1
            end = frame.find(b"\r", start)
            fields = frame[start:end if end > 0 else None].split(b"|") if start else []
            code = fields[1].decode() if len(fields) > 1 else "??"
            p.codes[code] = p.codes.get(code, 0) + 1
            if len(fields) < 3 or fields[2] != self.expected:
                p.mismatched += 1
            p.answered += 1
            self.waiting = False
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiting:                    # closed with a message unanswered
            self.progress.closed += 1
        if not self.done.done():
            self.done.set_result(None)


async def drive(port: int, total: int, connections: int, run_id: str, *, offset: int = 0,
                host: str = "127.0.0.1", every: float = 0.0,
                sample: Callable[[Progress], None] | None = None) -> Progress:
    """Send ``total`` new bookings over ``connections`` closed-loop connections; ``sample`` is
    called every ``every`` seconds and at the end. ``offset`` keeps patients/slots apart."""
    loop = asyncio.get_running_loop()
    progress = Progress(total)
    template = Template(TEMPLATE, run_id)
    dones: list[asyncio.Future[None]] = []
    for i in range(connections):
        fut: asyncio.Future[None] = loop.create_future()
        dones.append(fut)
        await loop.create_connection(
            lambda i=i, f=fut: _Sender(i, template, progress, offset, f), host, port)
    waiting = asyncio.gather(*dones)
    while not waiting.done():
        await asyncio.wait([waiting], timeout=every or None)
        if sample is not None:
            sample(progress)
    return progress


def _downsample(rows: list[dict[str, Any]], keep: int) -> list[dict[str, Any]]:
    if len(rows) <= keep:
        return rows
    step = (len(rows) - 1) / (keep - 1)
    return [rows[round(i * step)] for i in range(keep)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--sample-every", type=float, default=5.0)
    ap.add_argument("--warmup", type=int, default=20_000, help="messages before the reference RSS")
    ap.add_argument("--database-url", default="", help="an empty database (default: embedded)")
    ap.add_argument("--no-write", action="store_true", help="print the section instead of writing it")
    args = ap.parse_args()
    if len(harness.cores()) >= 2:
        os.sched_setaffinity(0, {harness.cores()[1]})
    work = Path(tempfile.mkdtemp(prefix="radsched-soak-"))
    pg = None
    url = args.database_url
    if not url:
        from radsched_engine.store import EmbeddedPostgres

        pg = EmbeddedPostgres(work / "pg-data")
        url = pg.start()
    (work / "channels").mkdir()
    (work / "channels" / "scheduling.yaml").write_text(CHANNEL)
    port = harness.free_port()
    env = {"RADSCHED_CHANNELS_DIR": str(work / "channels"), "RADSCHED_DATABASE_URL": url,
           "RADSCHED_MLLP_LISTEN": f"127.0.0.1:{port}", "RADSCHED_DATA_DIR": str(work / "data"),
           "RADSCHED_METRICS_LISTEN": f"127.0.0.1:{harness.free_port()}"}
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    last = [started, 0]

    try:
        with harness.server([sys.executable, "-m", "radsched_engine.cli", "run"], port, env=env) as proc:
            def sample(p: Progress) -> None:
                now = time.monotonic()
                rate = (p.answered - last[1]) / (now - last[0]) if now > last[0] else 0.0
                last[:] = [now, p.answered]
                row = {"messages": p.answered, "seconds": round(now - started, 1),
                       "rate": round(rate), "rss_mib": round(rss_kib(proc.pid) / 1024, 1)}
                rows.append(row)
                print(f"{row['messages']:>9} msgs {row['seconds']:>8} s {row['rate']:>6} msg/s "
                      f"RSS {row['rss_mib']:>7} MiB codes={p.codes} bad_msa2={p.mismatched}",
                      flush=True)

            sample(Progress(args.messages))
            progress = asyncio.run(drive(port, args.messages, args.connections, f"SOAK{os.getpid()}",
                                         every=args.sample_every, sample=sample))
            final_rss = rss_kib(proc.pid)
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    finally:
        if pg is not None:
            pg.stop()
            shutil.rmtree(work / "pg-data", ignore_errors=True)
    elapsed = time.monotonic() - started
    ref = next((r for r in rows if r["messages"] >= args.warmup), rows[-1])
    end = rows[-1]
    peak = max(r["rss_mib"] for r in rows)
    span = max(end["messages"] - ref["messages"], 1)
    growth = end["rss_mib"] - ref["rss_mib"]
    summary = (f"{progress.answered:,} of {args.messages:,} messages answered in {elapsed:,.0f} s "
               f"({progress.answered / elapsed:,.0f} msg/s overall); ACK codes {progress.codes}, "
               f"bad MSA-2 {progress.mismatched}, connections closed by the engine {progress.closed}. "
               f"Engine RSS: {rows[0]['rss_mib']} MiB idle, {ref['rss_mib']} MiB after "
               f"{ref['messages']:,} messages (warm-up), {end['rss_mib']} MiB at the end "
               f"({final_rss / 1024:.1f} MiB just before stopping), peak {peak} MiB: "
               f"{growth:+.1f} MiB over the last {span:,} messages "
               f"({1024 * 1024 * growth / span:+.1f} bytes per message).")
    body = "\n".join([
        "## Soak: RSS over a long run through the durable channel (issue: hardening)",
        "",
        f"Measured {harness.stamp()} on {harness.machine()}.",
        f"Command: `python bench/soak.py --messages {args.messages} --connections {args.connections}` "
        "— the durable channel (parse, validate, conflict_check, persist, notify) on "
        + ("the given PostgreSQL" if args.database_url else "a private embedded PostgreSQL")
        + ", engine pinned to one core, sender on the other; every message a new booking, every "
        "ACK checked; VmRSS of the engine process sampled every "
        f"{args.sample_every:g} s.",
        "",
        summary,
        "",
        harness.table(_downsample(rows, 25), [("messages", "messages answered"), ("seconds", "s"),
                                              ("rate", "msg/s (interval)"), ("rss_mib", "RSS MiB")]),
    ])
    print(summary)
    if args.no_write:
        print(body)
    else:
        harness.write_section("soak", body)
        print("wrote BENCHMARKS.md")


if __name__ == "__main__":
    main()
