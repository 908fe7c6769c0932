"""The engine's HTTP port: Prometheus /metrics, /healthz, /readyz, and routes other parts add."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import metrics

log = structlog.get_logger("radsched.http")

ReadyCheck = Callable[[], Awaitable[tuple[bool, dict[str, str]]]]


class HttpServer:
    """aiohttp app on ``host:port``; ``ready`` decides /readyz (listeners up, store reachable)."""

    def __init__(self, host: str, port: int, ready: ReadyCheck) -> None:
        self.host, self.port = host, port
        self._ready = ready
        self.app = web.Application(client_max_size=64 * 1024)
        self.app.router.add_get("/metrics", self._metrics)
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self._runner: web.AppRunner | None = None

    def add_post(self, path: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
        """Let another part of the engine (e.g. SMS status callbacks) serve a POST route."""
        self.app.router.add_post(path, handler)

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        server = site._server
        if server is not None and server.sockets:   # port 0: learn the one the OS chose
            self.port = server.sockets[0].getsockname()[1]
        log.info("http_listening", listen=f"{self.host}:{self.port}")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry())  # type: ignore[arg-type]
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        ok, detail = await self._ready()
        return web.json_response({"ready": ok, **detail}, status=200 if ok else 503)
