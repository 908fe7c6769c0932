"""Notify test helpers: queue sms rows, a worker with the real SmsHandler, and a switchable TCP path."""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from radsched_engine.integrations.sms import SmsSender, SmsSettings
from radsched_engine.notify.sms_handler import SmsHandler
from radsched_engine.outbox import OutboxWorker, WorkerOptions
from radsched_engine.store.outbox import enqueue
from tests.outbox.helpers import Clock

TO = "+16175550123"


def engine_config(url: str | None, data_dir: Path) -> SimpleNamespace:
    """What ``services.build_services`` reads of the engine's configuration."""
    return SimpleNamespace(database=SimpleNamespace(url=url, connect_timeout=5.0, command_timeout=10.0),
                           data_dir=data_dir)
OPTIONS = WorkerOptions(poll_interval=0.05, lease=60.0, backoff_base=5.0, backoff_max=600.0)


async def queue_sms(store: Any, key: str, body: str, *, to: str | None = TO, order_key: str | None = None,
                    quiet: dict[str, str] | None = None, skip: str | None = None) -> int:
    payload = {"to": to, "body": body, "skip": skip, "event": "S12", "channel": "scheduling",
               "quiet": quiet, "order_key": order_key}
    async with store.connection() as conn, conn.transaction():
        assert await enqueue(conn, "sms", key, payload)
        return await conn.fetchval("SELECT id FROM outbox WHERE dedupe_key = $1", key)


def sms_worker(store: Any, env: dict[str, str], clock: Clock, *, timeout: float = 5.0,
               max_attempts: int = 5, concurrency: int = 4,
               callback: str | None = None) -> tuple[OutboxWorker, SmsHandler]:
    """A worker with the real handler and SmsSender (call inside the running loop)."""
    sender = SmsSender(SmsSettings.from_env(env, timeout=timeout))
    handler = SmsHandler(sender, store, concurrency=concurrency, max_attempts=max_attempts,
                         status_callback=callback, clock=clock)
    return OutboxWorker(store, [handler], OPTIONS, clock=clock, rng=random.Random(3)), handler


class Switch:
    """A TCP forwarder on a fixed local port that can be taken down (connection refused) and back."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}
