"""Optional clients and background workers, built once from the environment by the app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog

log = structlog.get_logger("radsched.services")


def _number(env: dict[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    value = float(text)
    if not value > 0:
        raise ValueError(f"{name} must be a positive number")
    return value


async def build_services(config: Any, store: Any, env: dict[str, str]) -> tuple[dict[str, Any], list[Any]]:
    """(named clients for stages, background workers with async start/stop).

    Clients are created only here, never by stages. Each integration adds itself when its
    configuration (environment) is present and a store exists to hold its outbox.

    Environment: ``TWILIO_*`` (see ``SmsSettings.from_env``; without credentials texts are
    recorded as dry runs), ``RADSCHED_SMS_STATUS_CALLBACK_URL`` (public URL of the status
    callback route on the HTTP port; unset = no callbacks), ``RADSCHED_SMS_CONCURRENCY`` (4),
    ``RADSCHED_SMS_MAX_ATTEMPTS`` (10), ``RADSCHED_SMS_RATE`` (texts started per second, 10:
    Twilio queues beyond a sender's throughput anyway, and sending never competes with ACKs for
    more than a sliver of CPU), ``RADSCHED_OUTBOX_POLL_SECONDS`` (0.5),
    ``RADSCHED_OUTBOX_LEASE_SECONDS`` (120).
    """
    services: dict[str, Any] = {}
    background: list[Any] = []
    if store is None:
        return services, background
    from .outbox import OutboxWorker, WorkerOptions

    options = WorkerOptions(poll_interval=_number(env, "RADSCHED_OUTBOX_POLL_SECONDS", 0.5),
                            lease=_number(env, "RADSCHED_OUTBOX_LEASE_SECONDS", 120.0))
    outbox_store, owns = await _worker_store(config, store)
    handlers: list[Any] = []
    try:
        handlers.append(await _sms(env, outbox_store, background))
        # Other outbox handlers (e.g. the conflict check's AI review) are appended here.
        from .conflicts.review import ai_review  # ANTHROPIC_*, RADSCHED_AI_* (see there)

        analyzer, ai_handler = ai_review(env, outbox_store)
        if ai_handler is not None:
            services["claude"] = analyzer
            handlers.append(ai_handler)
    except BaseException:
        for handler in handlers:
            await handler.close()
        if owns:
            await outbox_store.close()
        raise
    worker = OutboxWorker(outbox_store, handlers, options, owns_store=owns)
    services["outbox"] = worker
    background.insert(0, worker)          # started first, stopped last
    return services, background


class OwnPool:
    """The outbox worker's own few connections: ``connection()`` and ``close()`` like the Store,
    with the same json/jsonb codecs, but outside the engine pool's gauges and limits."""

    def __init__(self, pool: Any, acquire_timeout: float) -> None:
        self.pool = pool
        self.acquire_timeout = acquire_timeout

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        async with self.pool.acquire(timeout=self.acquire_timeout) as conn:
            yield conn

    async def close(self) -> None:
        await self.pool.close()


async def _worker_store(config: Any, store: Any) -> tuple[Any, bool]:
    """A small pool of the outbox worker's own, so deliveries never queue behind ACK traffic
    (falls back to the engine's pool when the database URL cannot be known)."""
    import asyncpg

    from .store.db import _init_connection, _no_reset
    from .store.embedded import database_url

    db = getattr(config, "database", None)
    connect = float(getattr(db, "connect_timeout", 5.0))
    command = float(getattr(db, "command_timeout", 10.0))
    try:
        url = getattr(db, "url", None) or await asyncio.to_thread(database_url, config.data_dir)
        pool = await asyncpg.create_pool(
            url, min_size=1, max_size=3, timeout=connect, command_timeout=command,
            init=_init_connection, reset=_no_reset,
            server_settings={"application_name": "radsched-outbox",
                             "lock_timeout": str(int(command * 500)),
                             "idle_in_transaction_session_timeout": str(int(command * 3000))})
    except Exception as exc:
        log.warning("outbox_pool_shared", error=type(exc).__name__)
        return store, False
    return OwnPool(pool, connect + command), True


async def _sms(env: dict[str, str], store: Any, background: list[Any]) -> Any:
    """The ``sms`` outbox handler (dry run without Twilio credentials) and its status callback."""
    from .integrations.sms import SmsSender, SmsSettings
    from .notify.callback import StatusCallback
    from .notify.sms_handler import SmsHandler

    settings = SmsSettings.from_env(env)
    concurrency = int(_number(env, "RADSCHED_SMS_CONCURRENCY", 4))
    max_attempts = int(_number(env, "RADSCHED_SMS_MAX_ATTEMPTS", 10))
    rate = _number(env, "RADSCHED_SMS_RATE", 10.0)
    callback_url = env.get("RADSCHED_SMS_STATUS_CALLBACK_URL", "").strip() or None
    sender = SmsSender(settings)
    handler = SmsHandler(sender, store, concurrency=concurrency, max_attempts=max_attempts, rate=rate,
                         status_callback=callback_url if not sender.dry_run else None)
    if callback_url and not sender.dry_run:
        try:
            callback = StatusCallback(sender, store, callback_url, opt_out=handler.opt_out)
        except ValueError:
            await sender.close()
            raise
        background.append(callback)
    if sender.dry_run:
        log.info("sms_dry_run_mode", missing=list(settings.missing()))
    return handler
