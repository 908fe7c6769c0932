"""Composition root: open resources, build channels from config, start listeners, drain on stop."""

from __future__ import annotations

import asyncio
import gc
import signal
from dataclasses import dataclass, field
from typing import Any

import structlog

from . import logs, metrics
from .ack import AckIdentity
from .channel import Channel
from .mllp.server import Limits, MllpServer
from .mllp.tls import server_context
from .pipeline import Pipeline, Resources, registry

log = structlog.get_logger("radsched.app")


def _split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def _group_commit(env: dict[str, str]) -> dict[str, int]:
    """Group commit tuning from the environment: ``RADSCHED_COMMIT_WRITERS`` (transactions in
    flight per channel, default 2) and ``RADSCHED_COMMIT_MAX_BATCH`` (messages per transaction,
    default 32)."""
    options = {}
    for name, key in (("RADSCHED_COMMIT_WRITERS", "writers"), ("RADSCHED_COMMIT_MAX_BATCH", "max_batch")):
        text = env.get(name, "").strip()
        if text:
            if not text.isdigit() or int(text) < 1:
                raise ValueError(f"{name} must be a positive integer")
            options[key] = int(text)
    return options


@dataclass
class Engine:
    """The running engine: store, channels, listeners, HTTP port and background services.

    ``start()`` opens everything in dependency order (store, services, channels, listeners,
    HTTP); ``stop()`` reverses it: stop accepting, let in-flight messages commit and be
    acknowledged within the grace period, stop services, close the store.
    """

    config: Any                       # EngineConfig
    channels: list[Any]               # [ChannelConfig]
    env: dict[str, str] = field(default_factory=dict)
    store: Any = None
    servers: list[MllpServer] = field(default_factory=list)
    http: Any = None
    services: dict[str, Any] = field(default_factory=dict)
    background: list[Any] = field(default_factory=list)   # objects with async start()/stop()
    retention: Any = None             # the data pruner (store.retention.Pruner), when configured
    _embedded: Any = None
    _flusher: Any = None
    _lock: Any = None
    _reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _draining: set[Any] = field(default_factory=set)
    ready: bool = False

    def needs_store(self) -> bool:
        specs = registry()
        return any(specs[s.name].transactional for ch in self.channels for s in ch.pipeline)

    async def start(self) -> None:
        from .datadir import DataDirLock
        from .http import HttpServer

        self._lock = DataDirLock(self.config.data_dir).acquire()
        if self.needs_store():
            await self._open_store()
        await self._start_services()
        self._add_retention()
        for service in self.background:
            if getattr(service, "early", False):   # (the outbox worker process: see there)
                await service.start()
        for cfg in self.channels:
            self.servers.append(self._build_server(cfg))
        host, port = _split_listen(self.config.metrics_listen)
        self.http = HttpServer(host, port, self._ready_check)
        for service in self.background:
            hook = getattr(service, "register_routes", None)
            if hook is not None:
                hook(self.http)
        await self.http.start()
        for server in self.servers:
            await self._open(server)
        for service in self.background:
            if not getattr(service, "early", False):
                await service.start()
        loop = asyncio.get_running_loop()
        self._flusher = loop.create_task(self._flush_logs())
        try:
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload()))
        except (NotImplementedError, RuntimeError, ValueError):
            pass                                   # not the main thread (tests) or no signals
        self.ready = True
        metrics.ENGINE_READY.set(1)
        # Everything built so far (modules, SDK clients, phone metadata: ~175,000 objects) lives
        # as long as the process: keep it out of the cyclic collector's full passes, which
        # would otherwise pause the event loop for tens of ms now and then (ACK latency tails).
        gc.freeze()
        log.info("engine_started", channels=[c.name for c in self.channels],
                 listen=[f"{s.host}:{s.port}" for s in self.servers])

    @staticmethod
    async def _open(server: MllpServer) -> None:
        """Start a channel: its stages' ``start`` hooks (``Pipeline.start``), then its listener."""
        await server.handler.pipeline.start()   # (the handler is the channel, built below)
        await server.start()

    def _build_server(self, cfg: Any) -> MllpServer:
        specs = registry()
        resources = Resources(channel=cfg.name, settings=cfg, store=self.store,
                              outbox=self.services.get("outbox"), services=self.services)
        steps = []
        for stage_cfg in cfg.pipeline:
            spec = specs[stage_cfg.name]
            steps.append((spec, spec.factory(stage_cfg.options, resources)))
        uow = (self.store.unit_of_work(cfg.name, **_group_commit(self.env))
               if self.store is not None else None)
        pipeline = Pipeline(cfg.name, steps, uow)
        identity = AckIdentity(cfg.ack.sending_application, cfg.ack.sending_facility)
        channel = Channel(cfg.name, pipeline, identity, cfg.ack.mode, cfg.ack.multi_message)
        lim = cfg.limits
        limits = Limits(lim.max_frame_bytes, lim.frame_timeout, lim.idle_timeout,
                        lim.max_connections, lim.write_timeout)
        ssl_ctx = None
        if cfg.tls is not None:
            ssl_ctx = server_context(cfg.tls.cert, cfg.tls.key, cfg.tls.client_ca, cfg.tls.min_version)
        host, port = _split_listen(cfg.listen)
        return MllpServer(cfg.name, host, port, channel, limits, ssl_context=ssl_ctx,
                          allow=tuple(cfg.allow))

    async def reload(self) -> list[str]:
        """SIGHUP: re-read the channel files and apply them; returns the problems (none = applied).

        A file with problems is rejected whole, with its lint errors logged, and every running
        channel keeps serving. Unchanged channels are left alone. A changed channel gets a new
        listener with its new pipeline; its old connections finish the messages they have
        received (acknowledged as before), then close, and senders reconnect to the new one.
        """
        from .config import ConfigError, load_channels

        async with self._reload_lock:
            try:
                fresh = load_channels(self.config.channels_dir, env=self.env)
                specs = registry()
                if self.store is None and any(specs[s.name].transactional for c in fresh
                                              for s in c.pipeline):
                    raise ConfigError([])
            except ConfigError as err:
                problems = [str(p) for p in err.problems] or [
                    "a channel now needs the database, which this engine did not open: restart it"]
                for problem in problems:
                    log.error("reload_rejected", problem=problem)
                metrics.RELOADS.labels("rejected").inc()
                return problems
            old = {c.name: c for c in self.channels}
            new = {c.name: c for c in fresh}
            servers = {s.name: s for s in self.servers}
            replace = [n for n in new if n in old and new[n] != old[n]]
            removed = [n for n in old if n not in new]
            added = [n for n in new if n not in old]
            retiring = [servers[n] for n in replace + removed]
            for server in retiring:
                server.stop_accepting()
            started = []
            for name in replace + added:
                server = self._build_server(new[name])
                await self._open(server)
                started.append(server)
            self.servers = [s for s in self.servers if s not in retiring] + started
            self.channels = fresh
            for server in retiring:
                task = asyncio.get_running_loop().create_task(server.drain(self.config.shutdown_grace))
                self._draining.add(task)
                task.add_done_callback(self._draining.discard)
            metrics.RELOADS.labels("applied").inc()
            log.info("reloaded", changed=replace, added=added, removed=removed)
            return []

    async def _open_store(self) -> None:
        from .store import open_store

        self.store, self._embedded = await open_store(self.config)

    async def _start_services(self) -> None:
        """Optional clients and workers (SMS, Claude, outbox) — built only here, from env."""
        from .services import build_services

        self.services, self.background = await build_services(self.config, self.store, self.env)

    def _add_retention(self) -> None:
        """The data pruner (``retention:`` in engine.yaml), when a period is set and a store is open."""
        settings = self.config.retention
        if self.store is None or not settings.enabled:
            return
        from .store.retention import Pruner

        self.retention = Pruner(self.store, settings)
        self.background.append(self.retention)     # started after the listeners, stopped first

    async def _flush_logs(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            logs.flush()

    async def _ready_check(self) -> tuple[bool, dict[str, str]]:
        detail: dict[str, str] = {"listeners": "up" if self.ready else "starting"}
        ok = self.ready
        for service in self.background:
            # Shown, not required: messages are still accepted and acknowledged while the
            # outbox worker process restarts (its rows wait in the database).
            report = getattr(service, "readiness", None)
            if report is not None:
                detail.update(report())
        if self.store is not None:
            healthy = await self.store.healthy()
            detail["database"] = "up" if healthy else "down"
            ok = ok and healthy
        return ok, detail

    async def stop(self, grace: float | None = None) -> None:
        grace = self.config.shutdown_grace if grace is None else grace
        self.ready = False
        metrics.ENGINE_READY.set(0)
        log.info("engine_stopping", grace=grace)
        for server in self.servers:
            server.stop_accepting()
        await asyncio.gather(*(s.drain(grace) for s in self.servers), *self._draining,
                             return_exceptions=True)
        for service in reversed(self.background):
            try:
                await service.stop()
            except Exception as exc:
                log.warning("service_stop_failed", service=type(service).__name__,
                            error=type(exc).__name__)
        if self.http is not None:
            await self.http.stop()
        if self.store is not None:
            await self.store.close()
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.stop)
        if self._lock is not None:
            self._lock.release()
        gc.unfreeze()
        log.info("engine_stopped")
        if self._flusher is not None:
            self._flusher.cancel()
        logs.flush()
