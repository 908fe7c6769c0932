"""Ack-path benchmark: this engine's parse+validate+ACK channel vs python-hl7's MLLP server.

Run from the repository root:  python bench/run_ack_bench.py [--duration 10]
Servers are pinned to one core and the load generator to the other (where the machine has two);
the figures replace the ``ack`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import harness


def engine_cmd() -> list[str]:
    return [sys.executable, "-m", "radsched_engine.cli", "run"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--connections", default="1,16")
    args = ap.parse_args()
    conns = [int(c) for c in args.connections.split(",")]
    logdir = Path(tempfile.mkdtemp(prefix="radsched-bench-"))
    rows = []

    def measure(name: str, cmd: list[str], port: int, env: dict[str, str] | None = None) -> None:
        for n in conns:
            with harness.server(cmd, port, env=env, log=logdir / f"{name}-{n}.log"):
                r = harness.loadgen(port, n, args.duration)
            rows.append({"server": name, **r})
            print(f"{name:42} conns={n:3} {r['msgs_per_s']:>9} msg/s p50={r['p50_ms']} ms "
                  f"p99={r['p99_ms']} ms codes={r['ack_codes']} bad_msa2={r['mismatched_msa2']}",
                  flush=True)

    port = harness.free_port()
    measure("radsched-engine (parse+validate+ACK)", engine_cmd(), port, {
        "RADSCHED_CHANNELS_DIR": "bench/channels/ack-only",
        "RADSCHED_MLLP_LISTEN": f"127.0.0.1:{port}",
        "RADSCHED_METRICS_LISTEN": f"127.0.0.1:{harness.free_port()}",
        "RADSCHED_DATA_DIR": str(logdir / "data"),
    })
    port = harness.free_port()
    measure("python-hl7 hl7.mllp server (create_ack)",
            [sys.executable, "bench/peers/hl7_mllp_server.py", "--port", str(port)], port)
    port = harness.free_port()
    measure("raw asyncio echo of MSH-10 (floor)",
            [sys.executable, "bench/peers/echo_server.py", "--port", str(port)], port)

    body = "\n".join([
        "## ACK path: parse + validate + ACK (issue: engine core)",
        "",
        f"Measured {harness.stamp()} on {harness.machine()}.",
        f"Command: `python bench/run_ack_bench.py --duration {args.duration:g}` — server pinned to one "
        "core, load generator (`bench/loadgen.py`, closed loop, every ACK's MSA-2 checked against "
        "the MSH-10 sent) on the other; message: `bench/messages/siu_s12.hl7` (8 segments). "
        "The engine runs `bench/channels/ack-only` with its normal JSON log line per message "
        "(written to a file) and metrics on.",
        "",
        harness.table(rows, [("server", "server"), ("connections", "connections"),
                             ("msgs_per_s", "msgs/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
                             ("max_ms", "max ms"), ("mismatched_msa2", "bad MSA-2"),
                             ("ack_codes", "ACK codes")]),
    ])
    harness.write_section("ack", body)
    print(f"wrote BENCHMARKS.md (logs in {logdir})")


if __name__ == "__main__":
    main()
