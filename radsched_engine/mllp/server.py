"""Asyncio MLLP listener: connections, limits, timeouts, one message in flight each, drain on stop."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import types
from collections import deque
from collections.abc import Coroutine, Generator
from dataclasses import dataclass
from typing import Protocol

import structlog

from .. import metrics
from .framing import Abandoned, FrameDecoder, Junk, Oversize, encode

log = structlog.get_logger("radsched.mllp")

# After a final answer (the oversize NAK), how long and how much a connection keeps reading and
# dropping what the peer still sends before it closes: see ``Connection._linger``.
LINGER_SECONDS = 2.0
LINGER_BYTES = 4 * 1024 * 1024


class FrameHandler(Protocol):
    """What a listener serves: the channel. It returns the reply payload (or None for none).

    ``inline`` says that ``handle`` normally completes without waiting on I/O (no database):
    the listener then runs it straight from ``data_received`` instead of in a task, and only
    hands it to a task if it does suspend.
    """

    inline: bool

    async def handle(self, frame: bytes, peer: str) -> bytes | None: ...

    def oversize(self, head: bytes, size: int, peer: str) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class Limits:
    max_frame_bytes: int = 1_048_576
    frame_timeout: float = 30.0       # a started frame must end within this many seconds
    idle_timeout: float = 600.0       # a connection with nothing to do is closed after this
    max_connections: int = 100
    write_timeout: float = 30.0       # a peer that does not read its ACKs is dropped after this
    max_queued_frames: int = 8        # complete frames waiting behind the one in flight


TLS_HANDSHAKE_TIMEOUT = 10.0        # seconds a TLS client may take to complete its handshake


def _tls_failure(exc: BaseException) -> str:
    """A short reason for a failed handshake (OpenSSL's reason code, 'timeout', ...)."""
    if isinstance(exc, ssl.SSLError):
        return (exc.reason or type(exc).__name__).lower()
    if isinstance(exc, TimeoutError):
        return "timeout"
    return type(exc).__name__


class MllpServer:
    """One listening socket serving one handler (a channel)."""

    def __init__(self, name: str, host: str, port: int, handler: FrameHandler, limits: Limits,
                 *, ssl_context: ssl.SSLContext | None = None, allow: tuple[str, ...] = ()) -> None:
        self.name, self.host, self.port = name, host, port
        self.handler = handler
        self.limits = limits
        self.ssl_context = ssl_context
        self.allow = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in allow)
        self.connections: set[Connection] = set()
        self._server: asyncio.AbstractServer | None = None
        self._open_gauge = metrics.CONNECTIONS_OPEN.labels(name)
        self.draining = False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # Plain TCP accept even for TLS: each connection checks the allowlist and the limit
        # first and only then starts TLS itself (``Connection._handshake``).
        self._server = await loop.create_server(
            lambda: Connection(self), self.host, self.port, reuse_address=True, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("listening", channel=self.name, listen=f"{self.host}:{self.port}",
                 tls=self.ssl_context is not None)

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()
        self.draining = True
        for conn in list(self.connections):
            conn.begin_drain()

    async def drain(self, grace: float) -> None:
        """Stop accepting, let every connection finish what it has received, then close all."""
        self.stop_accepting()
        workers = [c.worker for c in self.connections if c.worker is not None]
        if workers:
            _done, pending = await asyncio.wait(workers, timeout=grace)
            for task in pending:
                task.cancel()
        for conn in list(self.connections):
            conn.close()
        if self._server is not None:
            await self._server.wait_closed()

    def allowed(self, peer_ip: str) -> bool:
        if not self.allow:
            return True
        try:
            ip = ipaddress.ip_address(peer_ip)
        except ValueError:
            return False
        return any(ip in net for net in self.allow)


class Connection(asyncio.Protocol):
    """One MLLP connection: decode frames, answer each in order, enforce the limits."""

    def __init__(self, server: MllpServer) -> None:
        self.server = server
        self.limits = server.limits
        self.decoder = FrameDecoder(self.limits.max_frame_bytes)
        self.queue: deque[bytes] = deque()
        self.worker: asyncio.Task[None] | None = None
        self.handshake: asyncio.Task[None] | None = None
        self.early: bytearray | None = None    # TLS data that arrived before start_tls returned
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.loop = asyncio.get_running_loop()
        self.last_activity = self.loop.time()
        self.frame_started: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.closing = False
        self.draining = False
        self.reading_paused = False          # our queue of received frames is full
        self.write_blocked = False           # the peer is not reading its ACKs (above high water)
        self.read_stopped = False            # the transport is not reading (either reason)
        self.write_timer: asyncio.TimerHandle | None = None
        self.lingered = 0                    # bytes dropped after the oversize NAK
        self.inline = getattr(server.handler, "inline", False)
        channel = server.name
        self._bytes = metrics.BYTES_IN.labels(channel)
        self._junk = metrics.JUNK_BYTES.labels(channel)

    # -- lifecycle -----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peername = transport.get_extra_info("peername")
        self.peer = f"{peername[0]}:{peername[1]}" if peername else "?"
        ip = peername[0] if peername else ""
        server = self.server
        if server.draining:
            transport.close()
            return
        if not server.allowed(ip):
            metrics.CONNECTIONS.labels(server.name, "refused_allowlist").inc()
            log.warning("connection_refused", channel=server.name, peer=self.peer, reason="allowlist")
            transport.abort()
            return
        if len(server.connections) >= self.limits.max_connections:
            metrics.CONNECTIONS.labels(server.name, "refused_limit").inc()
            log.warning("connection_refused", channel=server.name, peer=self.peer,
                        reason="max_connections", count=len(server.connections))
            transport.abort()
            return
        server.connections.add(self)
        server._open_gauge.inc()
        if server.ssl_context is not None:
            # Start TLS here: its first step hands the socket to the TLS layer before a byte is
            # read (uvloop starts reading as soon as connection_made returns); a task goes on.
            self.early = bytearray()
            coro = self._handshake(transport, server.ssl_context)
            try:
                awaited = coro.send(None)
            except StopIteration:
                return
            self.handshake = self.loop.create_task(_drive(coro, awaited))
            return
        self._opened()

    async def _handshake(self, raw: asyncio.BaseTransport, context: ssl.SSLContext) -> None:
        """TLS after the allowlist and limit checks; a failed handshake is counted and logged."""
        server = self.server
        try:
            tls = await self.loop.start_tls(raw, self, context, server_side=True,  # type: ignore[arg-type]
                                            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT)
        except Exception as exc:
            self.early = None
            raw.close()
            if not (self.closing or server.draining):
                metrics.CONNECTIONS.labels(server.name, "tls_failed").inc()
                log.warning("tls_handshake_failed", channel=server.name, peer=self.peer,
                            reason=_tls_failure(exc))
            self.connection_lost(None)
            return
        if tls is None or self.closing:
            return
        self.transport = tls  # type: ignore[assignment]
        early, self.early = self.early, None
        self._opened()
        if early:
            self.data_received(bytes(early))

    def _opened(self) -> None:
        server = self.server
        metrics.CONNECTIONS.labels(server.name, "accepted").inc()
        cert = self.transport.get_extra_info("peercert")  # type: ignore[union-attr]
        if cert:
            subject = ", ".join("=".join(x) for rdn in cert.get("subject", ()) for x in rdn)
            log.info("connection_open", channel=server.name, peer=self.peer, tls_subject=subject)
        else:
            log.debug("connection_open", channel=server.name, peer=self.peer)
        self._arm(self.last_activity + self.limits.idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.server.connections:
            self.server.connections.discard(self)
            self.server._open_gauge.dec()
        self.closing = True
        self.can_write.set()
        if self.timer is not None:
            self.timer.cancel()
        if self.write_timer is not None:
            self.write_timer.cancel()
        # A frame in flight keeps running to its commit (the sender will resend and the
        # redelivery is recognised); frames only queued are dropped: they were never answered.
        self.queue.clear()
        log.debug("connection_closed", channel=self.server.name, peer=self.peer)

    def pause_writing(self) -> None:
        """The peer is not reading its ACKs: stop reading its frames (it gets no more work done
        for answers nobody reads) and drop it if it is still not reading after ``write_timeout``."""
        self.can_write.clear()
        self.write_blocked = True
        self._apply_reading()
        if self.write_timer is None and not self.closing:
            self.write_timer = self.loop.call_later(self.limits.write_timeout, self._write_stalled)

    def resume_writing(self) -> None:
        self.can_write.set()
        self.write_blocked = False
        if self.write_timer is not None:
            self.write_timer.cancel()
            self.write_timer = None
        self._apply_reading()
        if self.queue and (self.worker is None or self.worker.done()) and not self.closing:
            self.worker = self.loop.create_task(self._serve())

    def _write_stalled(self) -> None:
        self.write_timer = None
        if self.closing or not self.write_blocked:
            return
        metrics.FRAME_ERRORS.labels(self.server.name, "write_timeout").inc()
        log.warning("write_timeout", channel=self.server.name, peer=self.peer)
        self.closing = True
        self.transport.abort()  # type: ignore[union-attr]

    def _apply_reading(self) -> None:
        """Read from the peer unless our queue is full or it does not read its ACKs."""
        stop = self.reading_paused or self.write_blocked
        if stop == self.read_stopped:
            return
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.read_stopped = stop
        if stop:
            transport.pause_reading()
        else:
            transport.resume_reading()
            self._restart_frame_clock()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def begin_drain(self) -> None:
        """Shutdown: finish frames already received, then close; idle connections close now."""
        self.draining = True
        if self.worker is None or self.worker.done():
            self.close()

    # -- input -------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.early is not None:           # decrypted before our handshake task resumed
            self.early += data
            return
        self._bytes.inc(len(data))
        if self.decoder.failed:              # lingering after the oversize NAK: drop it
            self.lingered += len(data)
            if self.lingered > LINGER_BYTES:
                self.close()
            return
        now = self.loop.time()
        self.last_activity = now
        for event in self.decoder.feed(data):
            if type(event) is bytes:
                self.queue.append(event)
            else:
                self._problem(event)
                if type(event) is Oversize:    # answered; the connection is closing
                    return
        if self.decoder.in_frame:
            if self.frame_started is None:
                self.frame_started = now
                deadline = now + self.limits.frame_timeout
                if self.timer is None or self.timer.when() > deadline:
                    self._arm(deadline)
        else:
            self.frame_started = None
        if self.queue:
            if self.worker is None or self.worker.done():
                if self.inline and self.can_write.is_set():
                    self._serve_inline()
                if self.queue and (self.worker is None or self.worker.done()):
                    self.worker = self.loop.create_task(self._serve())
            if len(self.queue) > self.limits.max_queued_frames and not self.reading_paused:
                self.reading_paused = True
                self._apply_reading()

    def eof_received(self) -> bool | None:
        # Half-close: answer what was received, then close (return True keeps the write side).
        if self.worker is None or self.worker.done():
            return None
        self.draining = True
        return True

    def _problem(self, event: Junk | Abandoned | Oversize) -> None:
        name = self.server.name
        if isinstance(event, Junk):
            self._junk.inc(event.size)
            if not event.blank:
                metrics.FRAME_ERRORS.labels(name, "junk").inc()
                log.warning("junk_skipped", channel=name, peer=self.peer, bytes=event.size,
                            preview=event.preview.hex()[:32])
        elif isinstance(event, Abandoned):
            metrics.FRAME_ERRORS.labels(name, "abandoned").inc()
            log.warning("frame_abandoned", channel=name, peer=self.peer, bytes=event.size)
        else:
            metrics.FRAME_ERRORS.labels(name, "oversize").inc()
            log.warning("frame_oversize", channel=name, peer=self.peer, bytes=event.size,
                        limit=self.limits.max_frame_bytes)
            reply = self.server.handler.oversize(event.head, event.size, self.peer)
            self.queue.clear()
            self.closing = True             # nothing else is served or written on it
            if reply is not None and self.transport is not None:
                self.transport.write(encode(reply))
            self._linger()

    def _linger(self) -> None:
        """Close after a final answer without losing it (HTTP servers' "lingering close").

        Closing a socket with unread input makes the kernel reset the connection, and the reset
        can destroy the answer before the peer reads it (a sender still streaming a huge frame
        never saw its NAK). So: end our side after the answer (FIN), keep reading and dropping
        what the peer sends until it closes, ``LINGER_SECONDS`` pass or ``LINGER_BYTES`` came
        (a sender a few MiB over the limit finishes its frame and reads the NAK; one streaming
        100 MiB is cut off rather than read to the end), then close.
        """
        transport = self.transport
        if transport is None or transport.is_closing() or not transport.can_write_eof():
            self.close()                    # TLS cannot half-close
            return
        transport.write_eof()
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(LINGER_SECONDS, self.close)

    # -- serving -----------------------------------------------------------------------------
    def _serve_inline(self) -> None:
        """Answer queued frames synchronously while ``handle`` completes without suspending."""
        handler = self.server.handler
        queue = self.queue
        while queue and not self.closing and self.can_write.is_set():
            coro = handler.handle(queue.popleft(), self.peer)
            try:
                awaited = coro.send(None)
            except StopIteration as done:
                self._write_reply(done.value)
                continue
            self.worker = self.loop.create_task(self._finish(coro, awaited))
            return

    async def _finish(self, coro: Coroutine, awaited: object) -> None:
        """Continue a handler that suspended while run inline, then serve the rest in this task."""
        reply = await _resume(coro, awaited)
        self._write_reply(reply)
        await self._serve()

    def _write_reply(self, reply: bytes | None) -> None:
        self.last_activity = self.loop.time()
        if reply is not None and not self.closing:
            self.transport.write(encode(reply))  # type: ignore[union-attr]

    async def _serve(self) -> None:
        handler = self.server.handler
        queue = self.queue
        while queue and not self.closing:
            frame = queue.popleft()
            if self.reading_paused and len(queue) <= self.limits.max_queued_frames // 2:
                self.reading_paused = False
                self._apply_reading()
            reply = await handler.handle(frame, self.peer)
            self.last_activity = self.loop.time()
            if reply is None or self.closing:
                continue
            self.transport.write(encode(reply))  # type: ignore[union-attr]
            if not self.can_write.is_set():
                # ``_write_stalled`` drops the peer after write_timeout (connection_lost sets
                # the event); until then nothing more is read from it nor answered.
                await self.can_write.wait()
        if self.draining:
            self.close()

    # -- timers ------------------------------------------------------------------------------
    def _restart_frame_clock(self) -> None:
        """Reading resumed: a frame half read when it paused gets a whole ``frame_timeout``."""
        if self.frame_started is None or self.closing:
            return
        now = self.loop.time()
        self.frame_started = now
        deadline = now + self.limits.frame_timeout
        if self.timer is None or self.timer.when() > deadline:
            self._arm(deadline)

    def _arm(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_at(when, self._check)

    def _check(self) -> None:
        self.timer = None
        if self.closing:
            return
        now = self.loop.time()
        limits = self.limits
        # While reading is paused (our queue is full) a half-read frame cannot progress: that
        # time is ours, not the sender's, so the frame clock only runs while we read.
        started = None if self.read_stopped else self.frame_started
        if started is not None and self.decoder.in_frame and now - started >= limits.frame_timeout:
            metrics.FRAME_ERRORS.labels(self.server.name, "frame_timeout").inc()
            log.warning("frame_timeout", channel=self.server.name, peer=self.peer,
                        bytes=self.decoder.buffered, seconds=limits.frame_timeout)
            self.close()
            return
        busy = bool(self.queue) or (self.worker is not None and not self.worker.done())
        if not busy and now - self.last_activity >= limits.idle_timeout:
            metrics.FRAME_ERRORS.labels(self.server.name, "idle_timeout").inc()
            log.info("idle_timeout", channel=self.server.name, peer=self.peer,
                     seconds=limits.idle_timeout)
            self.close()
            return
        deadlines = [self.last_activity + limits.idle_timeout]
        if started is not None:
            deadlines.append(started + limits.frame_timeout)
        self._arm(max(min(deadlines), now + 0.05))


async def _drive(coro: Coroutine, awaited: object) -> None:
    """A task running ``coro`` on after its first step was taken synchronously."""
    await _resume(coro, awaited)


@types.coroutine
def _resume(coro: Coroutine, awaited: object) -> Generator[object, object, object]:
    """Drive ``coro`` on from the awaitable it yielded when it was started outside a task."""
    while True:
        try:
            value = yield awaited
        except BaseException as exc:         # cancellation and errors go into the coroutine
            try:
                awaited = coro.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                awaited = coro.send(value)
            except StopIteration as done:
                return done.value
