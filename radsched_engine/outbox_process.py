"""The outbox worker in a process of its own: texts and analyses never run on the loop that answers MLLP.

Sending a text through the twilio SDK costs about 1.3 ms of CPU in the calling process (aiohttp,
the SDK's request and response objects; `bench/` measured it), an analysis through the
anthropic SDK more. On the engine's event loop that time would be added to the ACK latency of
whichever message arrived meanwhile. So the engine starts the worker (``outbox.OutboxWorker``
with its handlers, as ``services.build_worker`` builds them) in a child process:

- the child has its own small pool; everything it needs is in the database (rows, leases), so
  nothing is handed over and nothing is lost if it dies: rows it held are reclaimed after their
  lease and reconciled (``outbox`` module). The engine starts it again after a pause (1 s,
  doubling up to 30 s) and logs ``outbox_process_exited``;
- its log lines come back over a pipe and are written by the engine, in order with its own
  (one writer on stdout); its metrics come back as a snapshot every quarter of a second and
  ``/metrics`` shows them with the engine's (``metrics.registry``);
- it stops when the engine asks (in-flight deliveries get the worker's ``stop_grace``), on
  SIGTERM/SIGINT (a service manager signalling the whole group), or when the pipe closes (the
  engine died);
- it runs below the engine's CPU priority (``spec["nice"]``, ``RADSCHED_OUTBOX_NICE``): by default
  under Linux's ``SCHED_IDLE`` policy, so where the two share a core a message arriving pre-empts
  a send at once (BENCHMARKS.md, notify notes); or that many nice steps below.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
from types import SimpleNamespace
from typing import Any

import structlog

from . import logs, metrics

log = structlog.get_logger("radsched.outbox")

SOURCE = "outbox_process"
TICK = 0.25                 # seconds between the child's log flushes and metric snapshots
RESTART_FIRST, RESTART_MAX = 1.0, 30.0


class WorkerProcess:
    """The parent's handle: a background service (``start``/``stop``) that keeps the child running.

    ``early``: the engine starts it before its listeners, and ``start`` returns once the child
    runs its worker (its imports — the SDKs — take a second or two of CPU, better spent before
    the first message than beside it), or after ``ready_timeout`` at the latest.
    """

    early = True

    def __init__(self, spec: dict[str, Any], *, stop_timeout: float = 15.0,
                 ready_timeout: float = 30.0) -> None:
        self.spec = spec
        self.stop_timeout = stop_timeout
        self.ready_timeout = ready_timeout
        self._ready = asyncio.Event()
        self.process: Any = None
        self.starts = 0
        self._conn: Any = None
        self._stopping = False
        self._delay = RESTART_FIRST
        self._loop: asyncio.AbstractEventLoop | None = None
        self._restart: asyncio.TimerHandle | None = None
        self._exited = asyncio.Event()

    def readiness(self) -> dict[str, str]:
        """``/readyz`` detail: ``outbox_process`` is up, starting, restarting or stopped."""
        if self.process is None:
            state = "stopped"
        elif self._restart is not None or not self.process.is_alive():
            state = "restarting"
        else:
            state = "up" if self._ready.is_set() else "starting"
        return {"outbox_process": state}

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._spawn()
        try:
            await asyncio.wait_for(self._ready.wait(), self.ready_timeout)
        except TimeoutError:
            log.warning("outbox_process_slow_start", waited=self.ready_timeout)

    def _spawn(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        ours, theirs = ctx.Pipe()
        process = ctx.Process(target=child_main, args=(theirs, self.spec), name="radsched-outbox",
                              daemon=True)
        process.start()
        theirs.close()
        self.process, self._conn, self.starts = process, ours, self.starts + 1
        self._exited.clear()
        self._ready.clear()
        started = time.monotonic()
        threading.Thread(target=self._read, args=(ours, process, started), daemon=True,
                         name="radsched-outbox-pipe").start()
        log.info("outbox_process_started", pid=process.pid)

    def _read(self, conn: Any, process: Any, started: float) -> None:
        """The pipe's reader thread: log lines and metric snapshots to the loop, then the end."""
        loop = self._loop
        assert loop is not None
        try:
            while True:
                kind, value = conn.recv()
                if kind == "log":
                    loop.call_soon_threadsafe(logs.relay, value)
                elif kind == "metrics":
                    metrics.set_remote(SOURCE, value)
                elif kind == "ready":
                    loop.call_soon_threadsafe(self._ready.set)
        except (EOFError, OSError):
            pass
        process.join()
        try:
            loop.call_soon_threadsafe(self._ended, process, time.monotonic() - started)
        except RuntimeError:               # the engine's loop is already closed
            pass

    def _ended(self, process: Any, lived: float) -> None:
        if self.process is not None and process is not self.process:
            return                        # an earlier child's late news: not the current one
        metrics.retire_remote(SOURCE)
        self._exited.set()
        self._ready.set()                 # (a start still waiting: the child will not be ready)
        if self._stopping:
            return
        if lived > 60:
            self._delay = RESTART_FIRST
        log.warning("outbox_process_exited", code=process.exitcode, restart_in=self._delay)
        metrics.OUTBOX_PROCESS_EXITS.inc()
        assert self._loop is not None
        self._restart = self._loop.call_later(self._delay, self._again)
        self._delay = min(RESTART_MAX, self._delay * 2)

    def _again(self) -> None:
        self._restart = None
        if not self._stopping:
            self._spawn()

    async def stop(self) -> None:
        """Ask the child to finish (its deliveries in flight get the worker's grace), wait for it;
        terminate it if it does not end within ``stop_timeout``."""
        self._stopping = True
        if self._restart is not None:
            self._restart.cancel()
            self._restart = None
        process = self.process
        if process is None:
            return
        try:
            self._conn.send(("stop", None))
        except (OSError, ValueError):
            pass
        try:
            await asyncio.wait_for(self._exited.wait(), self.stop_timeout)
        except TimeoutError:
            log.warning("outbox_process_killed", pid=process.pid)
            process.kill()
            await asyncio.to_thread(process.join, 5.0)
        self._conn.close()
        self.process = None


# -- the child --------------------------------------------------------------------------------


class _PipeStream:
    """The child's log stream: each write goes to the parent as one message."""

    def __init__(self, conn: Any, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock

    def write(self, text: str) -> int:
        if text:
            try:
                with self._lock:
                    self._conn.send(("log", text))
            except (OSError, ValueError):  # the engine is gone: nobody to write for (we stop)
                pass
        return len(text)

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return False


def child_main(conn: Any, spec: dict[str, Any]) -> None:
    """Entry point of the worker process (``multiprocessing`` spawn target)."""
    lock = threading.Lock()
    logs.configure(spec.get("log_format", "json"), spec.get("log_level", "info"),
                   stream=_PipeStream(conn, lock))
    _give_way(spec.get("nice", 0))
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:            # pragma: no cover - uvloop is a Linux/macOS dependency
        runner = asyncio.run
    try:
        runner(_serve(conn, lock, spec))
    except Exception as exc:
        log.error("outbox_process_failed", error=type(exc).__name__, detail=str(exc)[:300])
        logs.flush()
        raise SystemExit(1) from None
    finally:
        logs.flush()


def _give_way(nice: int | str) -> None:
    """Lower this process's CPU priority before any thread starts (threads inherit it)."""
    if nice == "idle":
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return
        except (AttributeError, OSError) as exc:   # not Linux, or refused: the lowest nice
            log.warning("outbox_priority_fallback", wanted="SCHED_IDLE", used="nice 19",
                        error=type(exc).__name__)
            nice = 19
    if nice:
        os.nice(int(nice))


async def _serve(conn: Any, lock: threading.Lock, spec: dict[str, Any]) -> None:
    from .services import build_worker

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    threading.Thread(target=_watch, args=(conn, loop, stop), daemon=True,
                     name="radsched-outbox-parent").start()
    config = SimpleNamespace(database=SimpleNamespace(
        url=spec["url"], connect_timeout=spec["connect_timeout"],
        command_timeout=spec["command_timeout"]))
    worker = await build_worker(config, None, spec["env"], {}, [], callbacks=False)
    await worker.start()
    with lock:
        conn.send(("ready", None))
    last = None
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), TICK)
            except TimeoutError:
                pass
            last = _report(conn, lock, last)
    finally:
        await worker.stop()
        _report(conn, lock, last)


def _report(conn: Any, lock: threading.Lock, last: Any) -> Any:
    """Flush the log lines gathered and send the metrics when they changed; returns what was sent."""
    logs.flush()
    snap = metrics.snapshot()
    if snap != last:
        try:
            with lock:
                conn.send(("metrics", snap))
        except (OSError, ValueError):      # the engine is gone; _watch stops us
            pass
    return snap


def _watch(conn: Any, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Wait for the parent's "stop" or for the pipe to close (the parent is gone)."""
    try:
        while conn.recv()[0] != "stop":
            pass
    except (EOFError, OSError):
        pass
    loop.call_soon_threadsafe(stop.set)


__all__ = ["WorkerProcess", "child_main"]
