"""Embedded PostgreSQL life cycle, the database URL helpers, and surviving a database outage."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from radsched_engine.exchange import Outcome
from radsched_engine.pipeline import Pipeline, StageSpec
from radsched_engine.store import (
    EmbeddedPostgres,
    Store,
    database_url,
    database_url_for_config,
    mask_url,
    migrate,
    open_store,
)

from .helpers import exchange, journal_rows, siu

# A hang guard, not a timing assertion: a unit of work on a dead database must fail, not wait.
HANG_GUARD = 60


@dataclass(frozen=True)
class _Db:
    url: str | None = None
    pool_min: int = 1
    pool_max: int = 2
    connect_timeout: float = 2.0
    command_timeout: float = 5.0


@dataclass(frozen=True)
class _Config:
    data_dir: Path
    database: _Db = field(default_factory=_Db)


def test_mask_url_hides_passwords_only() -> None:
    assert mask_url("postgresql://app:s3cret@db:5432/rad") == "postgresql://app:***@db:5432/rad"
    assert mask_url("postgresql://app@db/rad") == "postgresql://app@db/rad"
    assert mask_url("postgresql://db/rad?user=a&password=pw&sslmode=require") == (
        "postgresql://db/rad?user=a&password=***&sslmode=require")
    cfg = _Config(Path("/nonexistent"), _Db(url="postgresql://u:pw@h/d"))
    assert database_url_for_config(cfg) == "postgresql://u:***@h/d"
    assert database_url_for_config(cfg, show_password=True) == "postgresql://u:pw@h/d"


def test_database_url_needs_a_running_server(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no embedded PostgreSQL"):
        database_url(tmp_path)


@pytest.mark.slow
async def test_open_store_embedded_then_outage_and_recovery(pg_data_dir: Path) -> None:
    """First run needs no setup; the store survives the server going away and coming back."""
    cfg = _Config(pg_data_dir)
    store, embedded = await open_store(cfg)
    assert embedded is not None and embedded.started_here
    try:
        url = database_url_for_config(cfg)
        assert url == database_url(pg_data_dir) and "/radsched?" in url
        assert await migrate(url) == []                       # open_store migrated already
        await _accept(store, "OK1")

        await asyncio.to_thread(embedded.stop)                # the database goes away
        assert not await store.healthy()
        ex = exchange(siu("S12", "DOWN1", "SCH|P1|F1"))
        async with asyncio.timeout(HANG_GUARD):
            with pytest.raises(Exception):  # noqa: B017 - any connection error
                async with store.unit_of_work("scheduling").transaction(ex):
                    pass
        # ... and through the pipeline runner it becomes AR 207, never a crash
        spec = StageSpec("noop", "test", object, lambda o, r: _noop, transactional=True)
        pipeline = Pipeline("scheduling", [(spec, _noop)], store.unit_of_work("scheduling"))
        ex2 = exchange(siu("S12", "DOWN2", "SCH|P1|F1"))
        async with asyncio.timeout(HANG_GUARD):
            await pipeline.run(ex2)
        assert ex2.outcome is Outcome.RETRY and ex2.problem is not None and ex2.problem.code == 207

        await asyncio.to_thread(embedded.start)               # it comes back: same Store works
        await _accept(store, "OK2")
        assert await store.healthy()
        rows = await journal_rows(url)
        assert [r["control_id"] for r in rows] == ["OK1", "OK2"]
    finally:
        await store.close()
        await asyncio.to_thread(embedded.stop)
    with pytest.raises(RuntimeError):
        database_url(pg_data_dir)


async def _noop(ex: object) -> None:
    return None


async def _accept(store: Store, control_id: str) -> None:
    ex = exchange(siu("S12", control_id, "SCH|P1|F1"))
    async with store.unit_of_work("scheduling").transaction(ex):
        pass
    assert ex.journal_id is not None


def test_embedded_stop_leaves_a_server_it_did_not_start(pg_data_dir: Path) -> None:
    first = EmbeddedPostgres(pg_data_dir)
    first.start()
    try:
        second = EmbeddedPostgres(pg_data_dir)
        assert second.start() == first.url
        assert not second.started_here
        second.stop()                                          # not ours: still running
        assert database_url(pg_data_dir) == first.url
    finally:
        first.stop()
