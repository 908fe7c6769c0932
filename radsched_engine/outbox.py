"""Durable side effects after commit: claim due rows, hand each to its kind's handler, back off, never twice.

Rows are queued by stages inside the message's transaction, in the outbox's intake
(``store.outbox.defer``). One worker per engine (several engines may share a database) claims
due rows of the kinds it has handlers for with ``FOR UPDATE SKIP LOCKED``; when fewer are due
than it has room for, it first moves the oldest rows of that kind from the intake into the
outbox (``store.outbox.take``, at most ``batch``; its commit does not wait for the disk: a
move lost in a crash leaves the rows in the intake, and the claim's commit, which does wait,
makes the move durable with it) and claims again. It marks them
``sending`` with a lease (``locked_until``) and commits *before* calling the handler; then it
records the result:

- ``done`` → ``sent``; ``skipped`` → ``skipped``; ``dead`` → ``dead`` (``last_error``);
- ``retry`` → ``retry`` at now + backoff (``retry_after`` when the handler gives one, else
  exponential with jitter), or ``dead`` once ``attempts`` reaches the handler's ``max_attempts``;
- ``held`` (policy, e.g. quiet hours) → ``pending`` at now + ``retry_after``, not an attempt.

Never twice: a row found ``sending`` with an expired lease (the engine died, or was stopped,
mid-delivery) goes to ``handler.reconcile`` first, which decides from the outside world whether
the effect already happened (None = it did not, deliver again). A delivery that may have
happened without us knowing (timeout, lost connection: ``Delivery.in_doubt``) is stored the
same way, as ``sending`` with a lease that ends when it is due again, so it is reconciled too.
Every result is written only if our lease still holds (``locked_until`` is the fencing token).

Order: rows with the same ``payload["order_key"]`` are delivered one at a time in id order (a
later text to a patient never overtakes an earlier one still waiting). Order keys are one
namespace for every kind: producers prefix theirs with their kind (``sms:...``).

Rate: a handler with a ``rate`` (deliveries started per second) draws from a bucket holding one
second's worth. While a backlog waits (the last claim of that kind filled every place it asked
for), the worker claims in waves: as many rows as the free places take (``concurrency``,
``batch``), up to a full bucket, once the bucket holds that many, rather than one row each time
a token comes back. The throughput is the same, in a few claims a second instead of one per
row, and the deliveries' database work and CPU come in short bursts instead of dribbling over
every second (no difference in the engine's ACK latency could be measured: BENCHMARKS.md,
notify notes). Without a backlog a due row is claimed at once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import structlog

from . import metrics
from .store.outbox import ASYNC_COMMIT, take

log = structlog.get_logger("radsched.outbox")

DeliveryStatus = Literal["done", "retry", "dead", "skipped", "held"]
OPEN_STATUSES = ("pending", "retry", "sending")


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One claimed outbox row as a handler sees it (``attempts`` counts this attempt)."""

    id: int
    kind: str
    dedupe_key: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime
    appointment_id: int | None


@dataclass(frozen=True, slots=True)
class Delivery:
    """A handler's verdict on one row.

    ``result`` is stored as the row's ``result`` (keep it JSON-serialisable); ``error`` (stored
    as ``last_error`` and logged) must never carry patient data. ``in_doubt``: the effect may
    have happened although we could not tell (reconcile before trying again). ``label`` is the
    bounded ``radsched_outbox_results`` label (default: sent, retry, dead, skipped, held).
    ``payload``: a new payload for the row, stored in the same statement as the verdict (a
    handler that prepared the row's content and decided without any outside effect, so it
    needed no write of its own before).
    """

    status: DeliveryStatus
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    retry_after: float | None = None
    in_doubt: bool = False
    label: str | None = None
    payload: dict[str, Any] | None = None


class OutboxHandler(Protocol):
    """Delivers the rows of one kind; registered with the worker, built by ``services.py``.

    Optional attributes the worker also honours: ``rate`` (float: most deliveries started per
    second, e.g. the provider's throughput; None = no limit), ``lease`` (float: seconds a
    claim is held, for handlers slower than the worker's default) and ``async_record`` (bool:
    results are committed without waiting for the disk. A crash of the database within
    ``wal_writer_delay`` (0.2 s) can then lose a result: the row is still ``sending`` under its
    lease and goes to ``reconcile`` when the lease ends, so only a handler whose ``reconcile``
    finds out from the outside world whether the effect happened may set it).
    """

    kind: str                 # e.g. "sms", "ai_analysis"
    concurrency: int          # most deliveries of this kind in flight at once
    max_attempts: int         # after this many transient failures the row is dead-lettered

    async def deliver(self, row: OutboxRow) -> Delivery: ...

    async def reconcile(self, row: OutboxRow) -> Delivery | None:
        """The row was found ``sending`` with an expired lease, or its last attempt was in doubt:
        decide without blindly redoing the effect. None = "not done, deliver again"."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How the worker polls, leases and backs off."""

    poll_interval: float = field(default=0.5, metadata={
        "doc": "Seconds between looks for due rows when idle."})
    lease: float = field(default=120.0, metadata={
        "doc": "Seconds a claimed row stays ours; a delivery still running then is cut off (in doubt)."})
    backoff_base: float = field(default=5.0, metadata={
        "doc": "First retry delay in seconds; doubled per attempt, with jitter."})
    backoff_max: float = field(default=3600.0, metadata={"doc": "Longest retry delay in seconds."})
    batch: int = field(default=50, metadata={"doc": "Most rows of one kind claimed per look."})
    stop_grace: float = field(default=10.0, metadata={
        "doc": "Seconds deliveries in flight may take to finish when the engine stops."})
    gauge_interval: float = field(default=5.0, metadata={
        "doc": "Seconds between refreshes of the depth and oldest-age gauges (longer when a "
               "refresh is slow: it takes at most 2 % of the time)."})


# Migration 0401: walks the due index (kind, next_attempt_at, id) in order and stops at the
# limit, so a claim costs the same whatever the backlog.
_CLAIM = "SELECT * FROM radsched_outbox_claim($1, $2, $3, $4)"

_RECORD = """
UPDATE outbox SET status = $3, attempts = attempts + $4, next_attempt_at = $5, locked_until = $6,
                  last_error = $7, result = $8::jsonb, payload = coalesce($9::jsonb, payload),
                  updated_at = now()
{}WHERE id = $1 AND status = 'sending' AND locked_until = $2
"""
# For handlers with ``async_record``: the statement's own transaction commits without waiting
# for its WAL to reach the disk.
_RECORD_ASYNC = _RECORD.format(ASYNC_COMMIT + "\n")
_RECORD = _RECORD.format("")

# The intake's share through radsched_intake_depth (migration 0403): exact up to INTAKE_EXACT
# rows of a kind, estimated beyond, at a cost that does not grow with the backlog (a full count
# took 55 ms at 150,000 rows, on the database the ACK's transactions wait for).
INTAKE_EXACT = 10_000
_GAUGES = f"""
SELECT kind, sum(depth)::bigint AS depth, min(oldest) AS oldest FROM (
    SELECT kind, count(*) AS depth, min(created_at) AS oldest FROM outbox
    WHERE status IN {OPEN_STATUSES!r} GROUP BY kind
    UNION ALL
    SELECT kind, depth, oldest FROM radsched_intake_depth({INTAKE_EXACT})
) AS waiting GROUP BY kind
"""


def backoff(attempts: int, base: float, cap: float, rng: random.Random) -> float:
    """Delay before retry number ``attempts`` (1-based): ``base * 2**(n-1)`` capped, half of it jittered."""
    delay = min(cap, base * 2 ** max(0, attempts - 1))
    return delay / 2 + rng.uniform(0, delay / 2)


class OutboxWorker:
    """Claims and dispatches outbox rows on its own connections; ``start()``/``stop()`` for the app.

    Tests drive it deterministically with ``run_once()``/``drain()`` and a ``clock`` they control
    (every due/lease comparison uses ``clock()``, not the database's ``now()``).
    """

    def __init__(self, store: Any, handlers: list[OutboxHandler], options: WorkerOptions | None = None,
                 *, clock: Callable[[], datetime] | None = None, rng: random.Random | None = None,
                 owns_store: bool = False) -> None:
        self.store = store
        self.handlers: dict[str, OutboxHandler] = {}
        for handler in handlers:
            if handler.kind in self.handlers:
                raise ValueError(f"two outbox handlers for kind {handler.kind!r}")
            self.handlers[handler.kind] = handler
        self.options = options or WorkerOptions()
        self.clock = clock or (lambda: datetime.now(UTC))
        self.rng = rng or random.Random()
        self.owns_store = owns_store
        self._in_flight: dict[str, int] = dict.fromkeys(self.handlers, 0)
        self._tokens: dict[str, tuple[float, float]] = {}     # kind -> (tokens, clock() timestamp)
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._gauges_at = 0.0
        self._gauges_every = self.options.gauge_interval
        self._backlog: dict[str, bool] = {}   # kind -> its last claim filled every place asked for
        self._next_look: float | None = None  # seconds until a waiting wave's tokens are in
        self._failing = False             # polls failing (logged once, then at debug level)

    def add_handler(self, handler: OutboxHandler) -> None:
        """Register one more handler (before ``start()``)."""
        if handler.kind in self.handlers:
            raise ValueError(f"two outbox handlers for kind {handler.kind!r}")
        self.handlers[handler.kind] = handler
        self._in_flight[handler.kind] = 0

    def wake(self) -> None:
        """Look for due rows now rather than at the next poll."""
        self._wake.set()

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping = False
        self._loop_task = asyncio.get_running_loop().create_task(self._main_loop(), name="outbox")
        log.info("outbox_started", kinds=sorted(self.handlers))

    async def stop(self) -> None:
        """Stop claiming; let deliveries in flight finish within ``stop_grace`` (the rest are
        cancelled, their rows stay ``sending`` and are reconciled after the lease), close handlers."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.options.stop_grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if pending:
                log.warning("outbox_stopped_in_flight", deliveries=len(pending))
        for handler in self.handlers.values():
            try:
                await handler.close()
            except Exception as exc:
                log.warning("outbox_handler_close_failed", kind=handler.kind, error=type(exc).__name__)
        if self.owns_store:
            await self.store.close()
        log.info("outbox_stopped")

    async def _main_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self.poll()
                if time.monotonic() - self._gauges_at >= self._gauges_every:
                    await self.refresh_gauges()
                if self._failing:
                    self._failing = False
                    log.info("outbox_poll_recovered")
            except Exception as exc:     # database down: keep trying at the poll interval
                (log.debug if self._failing else log.warning)(
                    "outbox_poll_failed", error=type(exc).__name__, detail=str(exc)[:200])
                self._failing = True
            if self._stopping:
                break
            wait, self._next_look = min(self.options.poll_interval,
                                        self._next_look or self.options.poll_interval), None
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass

    # -- claiming and dispatching ---------------------------------------------------------

    async def poll(self) -> int:
        """Claim what is due for every kind with free slots and start delivering; returns rows claimed."""
        claimed = 0
        for kind, handler in self.handlers.items():
            rate = getattr(handler, "rate", None)
            places = min(self.options.batch, max(0, handler.concurrency - self._in_flight[kind]))
            free = min(places, self._allowance(kind, rate))
            if free == 0 or self._stopping or (rate and self._backlog.get(kind)
                                               and free < self._wave(kind, places, rate)):
                continue
            lease = float(getattr(handler, "lease", None) or self.options.lease)
            now = self.clock()
            until = now + timedelta(seconds=lease)
            async with self.store.connection() as conn:
                records = await conn.fetch(_CLAIM, kind, now, free, until)
                if len(records) < free and await take(conn, kind, max(free, self.options.batch),
                                                      wait_for_disk=False):
                    records += await conn.fetch(_CLAIM, kind, now, free - len(records), until)
            for record in records:
                row = OutboxRow(record["id"], record["kind"], record["dedupe_key"], record["payload"],
                                record["attempts"], record["created_at"], record["appointment_id"])
                self._in_flight[kind] += 1
                self._spend(kind)
                task = asyncio.get_running_loop().create_task(
                    self._deliver(handler, row, record["previous"] == "sending", until, lease))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            self._backlog[kind] = len(records) == free
            claimed += len(records)
        return claimed

    def _wave(self, kind: str, places: int, rate: float) -> int:
        """Rows a rate-limited kind claims at once under a backlog: as many as the bucket holds
        when full, or the free places if fewer (a slow delivery does not hold the others back);
        notes when the bucket will hold them (the main loop looks again then)."""
        wave = max(1, min(places, int(max(1.0, rate))))
        tokens = self._tokens.get(kind, (0.0, 0.0))[0]
        if tokens < wave:
            wait = (wave - tokens) / rate
            self._next_look = wait if self._next_look is None else min(self._next_look, wait)
        return wave

    def _allowance(self, kind: str, rate: float | None) -> int:
        """Deliveries ``rate`` still allows now (token bucket of one second's worth)."""
        if not rate:
            return self.options.batch
        now = self.clock().timestamp()
        tokens, at = self._tokens.get(kind, (max(1.0, rate), now))
        tokens = min(max(1.0, rate), tokens + max(0.0, now - at) * rate)
        self._tokens[kind] = (tokens, now)
        return int(tokens)

    def _spend(self, kind: str) -> None:
        if kind in self._tokens:
            tokens, at = self._tokens[kind]
            self._tokens[kind] = (tokens - 1.0, at)

    async def run_once(self) -> int:
        """One poll, then wait for the deliveries it started; returns rows handled."""
        claimed = await self.poll()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        return claimed

    async def drain(self, max_rounds: int = 1000) -> int:
        """``run_once`` until nothing is due (per ``clock()``); returns rows handled; refreshes gauges."""
        total = 0
        for _ in range(max_rounds):
            handled = await self.run_once()
            total += handled
            if handled == 0:
                break
        await self.refresh_gauges()
        return total

    async def _deliver(self, handler: OutboxHandler, row: OutboxRow, reclaimed: bool,
                       until: datetime, lease: float) -> None:
        started = time.perf_counter()
        try:
            try:
                async with asyncio.timeout(lease * 0.9):
                    delivery = await handler.reconcile(row) if reclaimed else None
                    if delivery is None:
                        delivery = await handler.deliver(row)
            except TimeoutError:
                delivery = Delivery("retry", error=f"delivery still running after {lease * 0.9:g} s",
                                    in_doubt=True)
            except Exception as exc:
                log.exception("outbox_handler_failed", kind=row.kind, row=row.id,
                              error=type(exc).__name__)
                delivery = Delivery("retry", error=f"handler error: {type(exc).__name__}", in_doubt=True)
            metrics.OUTBOX_SEND_SECONDS.labels(row.kind).observe(time.perf_counter() - started)
            await self._record(handler, row, delivery, until)
        except Exception as exc:    # recording failed: the lease expires and reconcile decides
            log.warning("outbox_record_failed", kind=row.kind, row=row.id, error=type(exc).__name__)
        finally:
            self._in_flight[row.kind] -= 1
            self._wake.set()

    async def _record(self, handler: OutboxHandler, row: OutboxRow, delivery: Delivery,
                      until: datetime) -> None:
        now = self.clock()
        status, label, attempts_delta = delivery.status, delivery.label, 0
        next_at, locked = now, None
        result: dict[str, Any] | None = dict(delivery.result)
        if status == "retry" and row.attempts >= handler.max_attempts:
            status, label = "dead", "dead"
            delivery_error = f"gave up after {row.attempts} attempts: {delivery.error or 'retry'}"
        else:
            delivery_error = delivery.error
        if delivery.in_doubt:
            result = {**(result or {}), "in_doubt": True}
        if status == "retry":
            delay = delivery.retry_after
            if delay is None:
                delay = backoff(row.attempts, self.options.backoff_base, self.options.backoff_max,
                                self.rng)
            next_at = now + timedelta(seconds=max(0.0, delay))
            if delivery.in_doubt:     # claimable again at next_at, through reconcile
                locked = next_at
        elif status == "held":
            next_at = now + timedelta(seconds=max(0.0, delivery.retry_after or 0.0))
            attempts_delta = -1
        db_status = {"done": "sent", "retry": "sending" if locked else "retry", "held": "pending"}.get(
            status, status)
        sql = _RECORD_ASYNC if getattr(handler, "async_record", False) else _RECORD
        async with self.store.connection() as conn:
            outcome = await conn.execute(sql, row.id, until, db_status, attempts_delta, next_at,
                                         locked, delivery_error if status != "done" else None,
                                         result or None, delivery.payload)
        if not outcome.endswith(" 1"):
            log.warning("outbox_lease_lost", kind=row.kind, row=row.id)
            return
        label = label or {"done": "sent"}.get(status, status)
        metrics.OUTBOX_RESULTS.labels(row.kind, label).inc()
        log_fn = log.warning if status == "dead" else log.info
        log_fn("outbox_delivery", kind=row.kind, row=row.id, result=label, attempt=row.attempts,
               error=delivery_error if status != "done" else None)

    # -- metrics ----------------------------------------------------------------------------

    async def refresh_gauges(self) -> None:
        """Set the depth and oldest-pending-age gauges for every kind (handled here or seen)."""
        started = self._gauges_at = time.monotonic()
        async with self.store.connection() as conn:
            rows = await conn.fetch(_GAUGES)
        # The query counts the outbox's open rows (the intake's beyond INTAKE_EXACT are
        # estimated): when that is slow (many retrying), refresh less often.
        self._gauges_every = max(self.options.gauge_interval, 50 * (time.monotonic() - started))
        now = self.clock()
        seen = {r["kind"]: r for r in rows}
        for kind in set(self.handlers) | set(seen):
            r = seen.get(kind)
            metrics.OUTBOX_DEPTH.labels(kind).set(r["depth"] if r else 0)
            age = max(0.0, (now - r["oldest"]).total_seconds()) if r else 0.0
            metrics.OUTBOX_OLDEST_SECONDS.labels(kind).set(age)


__all__ = ["Delivery", "DeliveryStatus", "OutboxHandler", "OutboxRow", "OutboxWorker", "WorkerOptions",
           "backoff"]
