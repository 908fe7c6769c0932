"""Ack-path benchmark: this engine's parse+validate+ACK channel vs python-hl7's MLLP server.

Run from the repository root:  python bench/run_ack_bench.py [--duration 10]
Servers are pinned to one core and the load generator to the other (where the machine has two);
the figures replace the ``ack`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import harness


def engine_cmd() -> list[str]:
    return [sys.executable, "-m", "radsched_engine.cli", "run"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by a process (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def answered(metrics_port: int) -> int:
    """Messages the engine has answered so far (the sum of ``radsched_messages_total``)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("radsched_messages_total{")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--connections", default="1,16")
    ap.add_argument("--servers", default="engine,hl7,echo",
                    help="which servers to measure (engine, hl7, echo); BENCHMARKS.md is only "
                         "rewritten when all three ran")
    ap.add_argument("--no-uvloop", action="store_true",
                    help="run the engine on the stdlib asyncio loop (uvloop made unimportable)")
    ap.add_argument("--no-write", action="store_true",
                    help="print the section instead of rewriting BENCHMARKS.md (a busy machine)")
    args = ap.parse_args()
    servers = set(args.servers.split(","))
    conns = [int(c) for c in args.connections.split(",")]
    logdir = Path(tempfile.mkdtemp(prefix="radsched-bench-"))
    rows = []

    def measure(name: str, cmd: list[str], port: int, env: dict[str, str] | None = None,
                metrics_port: int | None = None) -> None:
        for n in conns:
            with harness.server(cmd, port, env=env, log=logdir / f"{name}-{n}.log") as proc:
                if metrics_port is not None:      # per-message CPU: warm-up included, start-up not
                    cpu0, count0 = cpu_seconds(proc.pid), answered(metrics_port)
                r = harness.loadgen(port, n, args.duration)
                if metrics_port is not None:
                    cpu, count = cpu_seconds(proc.pid) - cpu0, answered(metrics_port) - count0
                    r["cpu_us_per_msg"] = round(cpu / count * 1e6, 1) if count else None
            rows.append({"server": name, **r})
            cpu_note = f" cpu={r['cpu_us_per_msg']} us/msg" if "cpu_us_per_msg" in r else ""
            print(f"{name:42} conns={n:3} {r['msgs_per_s']:>9} msg/s p50={r['p50_ms']} ms "
                  f"p99={r['p99_ms']} ms codes={r['ack_codes']} bad_msa2={r['mismatched_msa2']}"
                  f"{cpu_note}", flush=True)

    if "engine" in servers:
        port, metrics_port = harness.free_port(), harness.free_port()
        env = {
            "RADSCHED_CHANNELS_DIR": "bench/channels/ack-only",
            "RADSCHED_MLLP_LISTEN": f"127.0.0.1:{port}",
            "RADSCHED_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
            "RADSCHED_DATA_DIR": str(logdir / "data"),
        }
        name = "radsched-engine (parse+validate+ACK)"
        if args.no_uvloop:
            stub = logdir / "no-uvloop"
            stub.mkdir()
            (stub / "uvloop.py").write_text("raise ImportError('uvloop disabled for this run')\n")
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(stub), os.environ.get("PYTHONPATH")]))
            name = "radsched-engine, stdlib asyncio loop"
        measure(name, engine_cmd(), port, env, metrics_port)
    if "hl7" in servers:
        port = harness.free_port()
        measure("python-hl7 hl7.mllp server (create_ack)",
                [sys.executable, "bench/peers/hl7_mllp_server.py", "--port", str(port)], port)
    if "echo" in servers:
        port = harness.free_port()
        measure("raw asyncio echo of MSH-10 (floor)",
                [sys.executable, "bench/peers/echo_server.py", "--port", str(port)], port)
    if servers != {"engine", "hl7", "echo"} or args.no_uvloop:
        print(f"partial run: BENCHMARKS.md left as it is (logs in {logdir})")
        return

    body = "\n".join([
        "## ACK path: parse + validate + ACK (issue: engine core)",
        "",
        f"Measured {harness.stamp()} on {harness.machine()}.",
        f"Command: `python bench/run_ack_bench.py --duration {args.duration:g}` — server pinned to one "
        "core, load generator (`bench/loadgen.py`, closed loop, every ACK's MSA-2 checked against "
        "the MSH-10 sent) on the other; message: `bench/messages/siu_s12.hl7` (8 segments). "
        "The engine runs `bench/channels/ack-only` with its normal JSON log line per message "
        "(written to a file) and metrics on. CPU µs/msg: the engine process's user+system CPU "
        "over the load run (warm-up included) divided by the messages it answered.",
        "",
        harness.table(rows, [("server", "server"), ("connections", "connections"),
                             ("msgs_per_s", "msgs/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
                             ("max_ms", "max ms"), ("cpu_us_per_msg", "CPU µs/msg"),
                             ("mismatched_msa2", "bad MSA-2"),
                             ("ack_codes", "ACK codes")]),
    ])
    if args.no_write:
        print(body)
        print(f"BENCHMARKS.md left as it is (logs in {logdir})")
        return
    harness.write_section("ack", body)
    print(f"wrote BENCHMARKS.md (logs in {logdir})")


if __name__ == "__main__":
    main()
