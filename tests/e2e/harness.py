"""Run a real engine in-process (config files, listeners, HTTP port) for end-to-end tests."""

from __future__ import annotations

import asyncio
import urllib.request
from contextlib import asynccontextmanager
from pathlib import Path

from radsched_engine.app import Engine
from radsched_engine.config import load_channels, load_engine

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_messages"
SHARED_SAMPLES = (ROOT / ".." / "shared" / "hl7-samples").resolve()
PERSIST_CHANNEL = """
listen: ${RADSCHED_MLLP_LISTEN}
pipeline:
  - parse
  - validate
  - persist
"""


@asynccontextmanager
async def running_engine(channels_dir: Path, data_dir: Path, *, database_url: str = "",
                         env: dict[str, str] | None = None):
    """Start an Engine from a channels directory with every listener on an ephemeral port."""
    environ = {"RADSCHED_CHANNELS_DIR": str(channels_dir), "RADSCHED_DATA_DIR": str(data_dir),
               "RADSCHED_METRICS_LISTEN": "127.0.0.1:0", "RADSCHED_MLLP_LISTEN": "127.0.0.1:0",
               "RADSCHED_DATABASE_URL": database_url, **(env or {})}
    config = load_engine(None, env=environ)
    channels = load_channels(config.channels_dir, env=environ)
    engine = Engine(config, channels, env=environ)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop(grace=5)


def write_channel(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(body)
    return path


async def scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    def get() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    return await asyncio.to_thread(get)
