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

    Deliveries (texts through Twilio, analyses through Claude) run in a worker process of their
    own (``outbox_process``): the SDKs spend about a millisecond of CPU per call, which on the
    event loop that answers MLLP would land in the ACK latency of whichever message arrived
    meanwhile. ``RADSCHED_OUTBOX_PROCESS=0`` runs them on this event loop instead.

    Environment: ``TWILIO_*`` (see ``SmsSettings.from_env``; without credentials texts are
    recorded as dry runs), ``RADSCHED_SMS_STATUS_CALLBACK_URL`` (public URL of the status
    callback route on the HTTP port; unset = no callbacks), ``RADSCHED_SMS_CONCURRENCY`` (4),
    ``RADSCHED_SMS_MAX_ATTEMPTS`` (10), ``RADSCHED_SMS_RATE`` (texts started per second, 10:
    Twilio queues beyond a sender's throughput anyway), ``RADSCHED_OUTBOX_POLL_SECONDS`` (0.5),
    ``RADSCHED_OUTBOX_LEASE_SECONDS`` (120), ``RADSCHED_OUTBOX_PROCESS`` (1),
    ``RADSCHED_OUTBOX_NICE`` (idle: the worker process runs under SCHED_IDLE; or 0-19 nice steps).
    """
    services: dict[str, Any] = {}
    background: list[Any] = []
    if store is None:
        return services, background
    if env.get("RADSCHED_OUTBOX_PROCESS", "1").strip().lower() in ("0", "false", "no", "off"):
        worker = await build_worker(config, store, env, services, background)
    else:
        worker = await _worker_process(config, store, env, services, background)
    services["outbox"] = worker
    background.insert(0, worker)          # started first, stopped last
    return services, background


async def build_worker(config: Any, store: Any, env: dict[str, str], services: dict[str, Any],
                       background: list[Any], *, callbacks: bool = True) -> Any:
    """The outbox worker with its handlers, on a small pool of its own (``store`` when none can
    be opened and ``store`` is given); the Claude analyzer goes into ``services``, the status
    callback route (``callbacks``) into ``background``."""
    from .outbox import OutboxWorker

    options = _worker_options(env)
    outbox_store, owns = await _worker_store(config, store)
    handlers: list[Any] = []
    try:
        handlers.append(await _sms(env, outbox_store, background if callbacks else None))
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
    return OutboxWorker(outbox_store, handlers, options, owns_store=owns)


async def _worker_process(config: Any, store: Any, env: dict[str, str], services: dict[str, Any],
                          background: list[Any]) -> Any:
    """The outbox worker process (``outbox_process.WorkerProcess``), plus what stays here: whether
    AI review is on (the conflict check queues its rows) and the status callback route."""
    from . import logs
    from .conflicts.review import review_settings
    from .outbox_process import WorkerProcess

    # The worker process reads the same environment: its mistakes are refused here, at start-up.
    _worker_options(env)
    _sms_numbers(env)
    ai_settings = review_settings(env)[0]
    try:
        url = await _database_url(config)
    except Exception as exc:
        log.warning("outbox_in_process", reason="database URL unknown", error=type(exc).__name__)
        return await build_worker(config, store, env, services, background)
    if ai_settings.enabled:
        services["claude"] = ai_settings        # the stages only ask whether review is on
    callback_url = env.get("RADSCHED_SMS_STATUS_CALLBACK_URL", "").strip()
    if callback_url:
        from .integrations.sms import SmsSettings

        if not SmsSettings.from_env(env).dry_run:
            await _sms(env, store, background, announce=False, callback_only=True)
    fmt, level = logs.settings()
    connect, command = _timeouts(config)
    return WorkerProcess({"url": url, "connect_timeout": connect, "command_timeout": command,
                          "env": dict(env), "log_format": fmt, "log_level": level,
                          "nice": _niceness(env)})


def _niceness(env: dict[str, str]) -> int | str:
    """``RADSCHED_OUTBOX_NICE``: how the worker process gives way to the engine on a shared core.

    ``idle`` (the default): Linux's ``SCHED_IDLE`` policy, under which a message arriving takes
    the core from a text or an analysis being prepared at once (a lower nice value only shares
    it less); the worker then runs on CPU time the engine leaves, so at full load texts wait in
    the outbox. ``0``-``19``: that many nice steps below the engine instead (shares the core).
    """
    text = env.get("RADSCHED_OUTBOX_NICE", "").strip().lower()
    if not text or text == "idle":
        return "idle"
    if not text.isdigit() or int(text) > 19:
        raise ValueError("RADSCHED_OUTBOX_NICE must be idle or a whole number from 0 to 19, "
                         f"not {text!r}")
    return int(text)


def _worker_options(env: dict[str, str]) -> Any:
    from .outbox import WorkerOptions

    return WorkerOptions(poll_interval=_number(env, "RADSCHED_OUTBOX_POLL_SECONDS", 0.5),
                         lease=_number(env, "RADSCHED_OUTBOX_LEASE_SECONDS", 120.0))


def _sms_numbers(env: dict[str, str]) -> tuple[int, int, float]:
    """(concurrency, max attempts, rate) of the sms handler."""
    return (int(_number(env, "RADSCHED_SMS_CONCURRENCY", 4)),
            int(_number(env, "RADSCHED_SMS_MAX_ATTEMPTS", 10)),
            _number(env, "RADSCHED_SMS_RATE", 10.0))


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
    """A small pool of the outbox worker's own, so deliveries never queue behind ACK traffic.

    It connects when first used: a database that is down at start-up is the worker's poll loop's
    to wait for (logged once), not a start-up failure. Falls back to the engine's pool ``store``
    when the database URL cannot be known (raises when there is no ``store``)."""
    import asyncpg

    from .store.db import _init_connection, _no_reset

    connect, command = _timeouts(config)
    try:
        url = await _database_url(config)
        pool = await asyncpg.create_pool(
            url, min_size=0, max_size=3, timeout=connect, command_timeout=command,
            init=_init_connection, reset=_no_reset,
            server_settings={"application_name": "radsched-outbox",
                             "lock_timeout": str(int(command * 500)),
                             "idle_in_transaction_session_timeout": str(int(command * 3000))})
    except Exception as exc:
        if store is None:
            raise
        log.warning("outbox_pool_shared", error=type(exc).__name__)
        return store, False
    return OwnPool(pool, connect + command), True


async def _database_url(config: Any) -> str:
    """``database.url``, else the embedded server's under ``data_dir`` (RuntimeError: none runs)."""
    from .store.embedded import database_url

    return (getattr(getattr(config, "database", None), "url", None)
            or await asyncio.to_thread(database_url, config.data_dir))


def _timeouts(config: Any) -> tuple[float, float]:
    """(connect, command) timeouts of ``database``, in seconds."""
    db = getattr(config, "database", None)
    return float(getattr(db, "connect_timeout", 5.0)), float(getattr(db, "command_timeout", 10.0))


async def _sms(env: dict[str, str], store: Any, background: list[Any] | None, *,
               announce: bool = True, callback_only: bool = False) -> Any:
    """The ``sms`` outbox handler (dry run without Twilio credentials) and its status callback
    (added to ``background`` unless that is None; ``callback_only``: the handler will never
    send, the callback closes the sender)."""
    from .integrations.sms import SmsSender, SmsSettings
    from .notify.callback import StatusCallback
    from .notify.sms_handler import SmsHandler

    settings = SmsSettings.from_env(env)
    concurrency, max_attempts, rate = _sms_numbers(env)
    callback_url = env.get("RADSCHED_SMS_STATUS_CALLBACK_URL", "").strip() or None
    sender = SmsSender(settings)
    handler = SmsHandler(sender, store, concurrency=concurrency, max_attempts=max_attempts, rate=rate,
                         status_callback=callback_url if not sender.dry_run else None)
    if callback_url and not sender.dry_run and background is not None:
        try:
            callback = StatusCallback(sender, store, callback_url, opt_out=handler.opt_out,
                                      owns_sender=callback_only)
        except ValueError:
            await sender.close()
            raise
        background.append(callback)
    if sender.dry_run and announce:
        log.info("sms_dry_run_mode", missing=list(settings.missing()))
    return handler
