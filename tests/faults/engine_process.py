"""The engine as a real process (``python -m radsched_engine.cli run``) for signal and TLS tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e.harness import write_channel


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def until(predicate: Any, timeout: float = 60.0, interval: float = 0.05) -> None:
    """Wait until ``await predicate()`` is true (a hang guard, not a timing assertion)."""
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(interval)


class EngineProcess:
    """One engine process: channel files and engine config written under ``workdir``.

    ``start()`` launches it (JSON logs at info into ``workdir/engine-<n>.log``; integrations only
    from ``env``, never from the caller's own ANTHROPIC_/TWILIO_/RADSCHED_ variables); ``ready()``
    waits for ``/readyz``; ``kill()``/``terminate()`` send SIGKILL/SIGTERM; ``events()`` parses
    the log lines. Starting again after a stop runs a new process on the same files and ports.
    """

    def __init__(self, workdir: Path, channels: dict[str, str], *, database_url: str = "",
                 env: dict[str, str] | None = None, engine_yaml: str = "",
                 data_dir: Path | None = None) -> None:
        self.workdir = workdir
        self.metrics_port = free_port()
        self.channels_dir = workdir / "channels"
        for name, body in channels.items():
            write_channel(self.channels_dir, name, body)
        self.config = workdir / "engine.yaml"
        self.config.write_text("log: {format: json, level: info}\n" + engine_yaml)
        inherited = {k: v for k, v in os.environ.items()
                     if not k.startswith(("ANTHROPIC_", "TWILIO_", "RADSCHED_"))}
        self.env = {**inherited, "RADSCHED_CHANNELS_DIR": str(self.channels_dir),
                    "RADSCHED_DATA_DIR": str(data_dir or workdir / "data"),
                    "RADSCHED_METRICS_LISTEN": f"127.0.0.1:{self.metrics_port}",
                    "RADSCHED_DATABASE_URL": database_url, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.log_path = workdir / "engine-0.log"

    def start(self) -> None:
        self.runs += 1
        self.log_path = self.workdir / f"engine-{self.runs}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "radsched_engine.cli", "run", "--config", str(self.config)],
                cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    async def ready(self, timeout: float = 90.0) -> None:
        async def check() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"engine exited {self.proc.returncode}:\n{self.log_text()}")
            try:
                status, _ = await asyncio.to_thread(self.get, "/readyz")
            except OSError:
                return False
            return status == 200

        await until(check, timeout, 0.1)

    async def metric(self, name: str, **labels: str) -> float:
        """The value of one sample on /metrics (0 when absent)."""
        _, text = await asyncio.to_thread(self.get, "/metrics")
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for line in text.splitlines():
            head, _, value = line.rpartition(" ")
            if head == (f"{name}{{{want}}}" if want else name):
                return float(value)
        return 0.0

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Clean-up: SIGKILL if still running."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        for line in self.log_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and (name is None or event.get("event") == name):
                found.append(event)
        return found
