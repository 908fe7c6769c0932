"""A real engine on its own event loop in a background thread, for sync (hypothesis) tests.

Hypothesis drives plain functions; the engine needs a running loop. ``LiveEngine`` starts the
engine exactly as ``tests/e2e/harness.running_engine`` does, on a loop in a thread, and runs
client coroutines on that loop with ``call``. Everything the loop's exception handler sees
(an exception out of a connection callback or task) is kept in ``errors``: the tests assert it
stays empty.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.e2e.harness import running_engine

T = TypeVar("T")


class LiveEngine:
    """``with LiveEngine(channels_dir, data_dir) as live: live.call(coro_fn, ...)``."""

    def __init__(self, channels_dir: Path, data_dir: Path, *, database_url: str = "",
                 env: dict[str, str] | None = None) -> None:
        self.channels_dir, self.data_dir = channels_dir, data_dir
        self.database_url, self.env = database_url, env
        self.loop = asyncio.new_event_loop()
        self.errors: list[dict[str, Any]] = []
        self.engine: Any = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="live-engine", daemon=True)

    def _record(self, _loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.errors.append(context)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.set_exception_handler(self._record)
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as exc:       # start-up failed: reported by __enter__
            self._failure = exc
            self._ready.set()
        finally:
            self.loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with running_engine(self.channels_dir, self.data_dir, database_url=self.database_url,
                                  env=self.env) as engine:
            self.engine = engine
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> LiveEngine:
        self._thread.start()
        if not self._ready.wait(120) or self._failure is not None:
            raise RuntimeError(f"engine did not start: {self._failure!r}")
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    @property
    def port(self) -> int:
        return self.engine.servers[0].port

    @property
    def server(self) -> Any:
        return self.engine.servers[0]

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any, timeout: float = 60.0) -> T:
        """Run ``fn(*args)`` on the engine's loop and return its result (re-raising its error)."""
        future = asyncio.run_coroutine_threadsafe(fn(*args), self.loop)   # type: ignore[arg-type]
        return future.result(timeout)

    def check_healthy(self) -> None:
        """No exception escaped into the loop; connections hold bounded buffers and queues."""
        def inspect() -> list[str]:
            gc.collect()       # a task that died with an unread exception reports it when freed
            problems = []
            for server in self.engine.servers:
                lim = server.limits
                for conn in server.connections:
                    if conn.decoder.buffered > lim.max_frame_bytes:
                        problems.append(f"decoder holds {conn.decoder.buffered} bytes")
                    if len(conn.queue) > lim.max_queued_frames + 64:
                        problems.append(f"{len(conn.queue)} frames queued")
                    if conn.worker is not None and conn.worker.done() and not conn.worker.cancelled() \
                            and conn.worker.exception() is not None:
                        problems.append(f"connection task raised {conn.worker.exception()!r}")
            return problems

        async def run() -> list[str]:
            return inspect()

        problems = self.call(run)
        errors = [f"{c.get('message')}: {c.get('exception')!r}" for c in self.errors]
        self.errors.clear()
        assert not errors and not problems, (errors, problems)
