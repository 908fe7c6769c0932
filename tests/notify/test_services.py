"""services.build_services: the outbox worker, the sms handler (dry run or Twilio) and the callback route."""

from __future__ import annotations

from pathlib import Path

import pytest

from radsched_engine.notify.callback import StatusCallback
from radsched_engine.notify.sms_handler import SmsHandler
from radsched_engine.outbox import OutboxWorker
from radsched_engine.services import OwnPool, build_services
from radsched_engine.store import Store
from tests.fakes.fake_twilio import FakeTwilio
from tests.notify.helpers import engine_config

IN_PROCESS = {"RADSCHED_OUTBOX_PROCESS": "0"}      # the worker on this loop, to look inside it



async def test_no_store_no_services(tmp_path: Path) -> None:
    assert await build_services(engine_config(None, tmp_path), None, {}) == ({}, [])


async def test_dry_run_worker_on_its_own_pool(store: Store, db_url: str, tmp_path: Path) -> None:
    services, background = await build_services(engine_config(db_url, tmp_path), store, IN_PROCESS)
    worker = services["outbox"]
    try:
        assert isinstance(worker, OutboxWorker) and background == [worker]
        assert isinstance(worker.store, OwnPool) and worker.owns_store
        handler = worker.handlers["sms"]
        assert isinstance(handler, SmsHandler) and handler.sender.dry_run
        assert (handler.concurrency, handler.max_attempts, handler.rate) == (4, 10, 10.0)
        async with worker.store.connection() as conn:
            assert await conn.fetchval("SELECT current_setting('application_name')") == "radsched-outbox"
            assert await conn.fetchval("SELECT '{\"a\": 1}'::jsonb") == {"a": 1}
    finally:
        await worker.stop()


async def test_twilio_with_callback_and_settings_from_env(store: Store, db_url: str, tmp_path: Path,
                                                         twilio_fake: FakeTwilio) -> None:
    env = {**twilio_fake.env(), "RADSCHED_SMS_STATUS_CALLBACK_URL": "https://rad.example.org/cb",
           "RADSCHED_SMS_CONCURRENCY": "2", "RADSCHED_SMS_MAX_ATTEMPTS": "3", "RADSCHED_SMS_RATE": "0.5",
           "RADSCHED_OUTBOX_POLL_SECONDS": "2", "RADSCHED_OUTBOX_LEASE_SECONDS": "30", **IN_PROCESS}
    services, background = await build_services(engine_config(db_url, tmp_path), store, env)
    worker = services["outbox"]
    try:
        assert background[0] is worker and isinstance(background[1], StatusCallback)
        assert background[1].path == "/cb"
        handler = worker.handlers["sms"]
        assert not handler.sender.dry_run and handler.status_callback == "https://rad.example.org/cb"
        assert (handler.concurrency, handler.max_attempts, handler.rate) == (2, 3, 0.5)
        assert (worker.options.poll_interval, worker.options.lease) == (2.0, 30.0)
    finally:
        await worker.stop()


async def test_unknown_database_url_shares_the_engine_pool(store: Store, tmp_path: Path) -> None:
    services, _ = await build_services(engine_config(None, tmp_path / "no-server"), store, {})
    worker = services["outbox"]
    assert worker.store is store and not worker.owns_store
    await worker.stop()


async def test_bad_numbers_in_the_environment_are_refused(store: Store, db_url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="RADSCHED_SMS_RATE"):
        await build_services(engine_config(db_url, tmp_path), store, {"RADSCHED_SMS_RATE": "-1"})
