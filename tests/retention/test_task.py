"""The pruner as the engine runs it: periodic runs, a clean stop, the database down for a run."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from prometheus_client import REGISTRY

from radsched_engine import logs
from radsched_engine.app import Engine
from radsched_engine.config import RetentionSettings, load_channels, load_engine
from radsched_engine.store.retention import Pruner
from tests.e2e.harness import scrape, write_channel

from .helpers import add_journal, add_outbox, journal_state, outbox_ids

FAST = RetentionSettings(raw_days=30, journal_days=90, outbox_days=30, interval=0.05,
                         start_delay=0, batch_size=10)


def log_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    logs.flush()
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.startswith("{")]


async def test_periodic_runs_prune_rows_that_age_meanwhile_and_stop_cleanly(store: Any) -> None:
    await add_journal(store, [100, 40, 1])
    pruner = Pruner(store, FAST)
    await pruner.start()
    await pruner.wait_runs(1)
    assert sorted((await journal_state(store)).values())[0] == 0
    await add_outbox(store, [("sent", 40, 40)])        # arrives between runs
    runs = pruner.runs
    await pruner.wait_runs(runs + 2)
    assert await outbox_ids(store) == []
    await pruner.stop()
    assert pruner._task is None and pruner.failures == 0
    stopped_at = pruner.runs
    await asyncio.sleep(0.2)
    assert pruner.runs == stopped_at                  # no run after stop()


async def test_stop_before_the_first_run(store: Any) -> None:
    pruner = Pruner(store, replace(FAST, start_delay=3600))
    await pruner.start()
    await pruner.stop()
    assert pruner.runs == 0


async def test_database_down_for_a_run_logs_a_warning_and_the_next_run_works(
        store: Any, db_url: str, pg_server: str) -> None:
    await add_journal(store, [100, 40])
    name = urlsplit(db_url).path.lstrip("/")
    buffer = io.StringIO()
    logs.configure("json", "info", stream=buffer)
    admin = await asyncpg.connect(pg_server)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = $1 AND pid <> pg_backend_pid()", name)
        pruner = Pruner(store, FAST)
        assert await pruner.run_once() is None        # failed, not raised
        assert pruner.failures == 1
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        report = await pruner.run_once()
        assert report is not None and report.complete
        assert report.count("hl7_messages", "deleted") == 1
        assert report.count("hl7_messages", "raw_cleared") == 1
        lines = [ln for ln in log_lines(buffer) if ln.get("logger", "").startswith("radsched.ret")
                 or ln["event"].startswith("retention")]
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
        logs.configure("json", "info")
    failed = [ln for ln in lines if ln["event"] == "retention_failed"]
    done = [ln for ln in lines if ln["event"] == "retention_run"]
    assert len(failed) == 1 and failed[0]["level"] == "warning"
    assert failed[0]["reason"] in ("connection", "query", "timeout", "other")
    assert failed[0]["error"]                             # the exception class, no detail text
    assert len(done) == 1 and done[0]["level"] == "info"
    assert (done[0]["hl7_messages_deleted"], done[0]["hl7_messages_raw_cleared"],
            done[0]["outbox_deleted"], done[0]["complete"]) == (1, 1, 0, True)
    assert "TESTPATIENT" not in buffer.getvalue() and "MRN" not in buffer.getvalue()


@asynccontextmanager
async def engine_with(tmp_path: Path, db_url: str, retention: str) -> AsyncIterator[Engine]:
    """An in-process engine from an engine file of the test's own (retention section given)."""
    channels = tmp_path / "channels"
    write_channel(channels, "ret", "listen: 127.0.0.1:0\npipeline: [parse, persist]\n")
    path = tmp_path / "engine.yaml"
    path.write_text(f"channels_dir: {channels}\ndata_dir: {tmp_path / 'data'}\n"
                    f"database: {{url: '{db_url}'}}\nmetrics_listen: 127.0.0.1:0\n{retention}")
    config = load_engine(path, env={})
    engine = Engine(config, load_channels(config.channels_dir, env={}), env={})
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop(grace=5)


async def test_the_engine_runs_the_pruner_and_stops_it(tmp_path: Path, db_url: str, store: Any) -> None:
    """A real engine with retention configured: it prunes, shows it in /metrics, stops cleanly."""
    await add_journal(store, [400, 100, 2])
    retention = "retention: {raw_days: 30, journal_days: 365, start_delay: 0, interval: 3600}\n"
    async with engine_with(tmp_path, db_url, retention) as engine:
        pruner = engine.retention
        assert isinstance(pruner, Pruner) and pruner in engine.background
        await pruner.wait_runs(1)
        assert pruner.failures == 0
        state = await journal_state(store)
        assert len(state) == 2 and sorted(state.values())[0] == 0
        status, body = await scrape(engine.http.port)
        assert status == 200
        assert 'radsched_retention_rows_total{action="deleted",table="hl7_messages"}' in body
        assert "radsched_retention_last_success_timestamp_seconds " in body
        assert REGISTRY.get_sample_value("radsched_retention_last_success_timestamp_seconds") > 0
    assert pruner._task is None


async def test_an_engine_without_retention_has_no_pruner(tmp_path: Path, db_url: str) -> None:
    async with engine_with(tmp_path, db_url, "") as engine:
        assert engine.retention is None
        assert not any(isinstance(s, Pruner) for s in engine.background)


class NeverAnswers:
    """A stand-in store whose connections never come (a database that does not answer)."""

    def __init__(self) -> None:
        self.asked = asyncio.Event()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        self.asked.set()
        await asyncio.Event().wait()
        yield None


async def test_stop_does_not_wait_for_a_database_that_never_answers() -> None:
    store = NeverAnswers()
    pruner = Pruner(store, FAST)
    await pruner.start()
    await store.asked.wait()                     # a run is waiting for its connection
    async with asyncio.timeout(30):              # a hang guard, not a timing assertion
        await pruner.stop(grace=0.1)
    assert pruner._task is None and pruner.runs == 0
