"""The Store: an asyncpg pool, health, and the unit of work that journals and commits each message."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
import structlog

from .. import metrics
from ..exchange import Exchange, Outcome
from . import deferred, journal

log = structlog.get_logger("radsched.store")


# json/jsonb values cross this codec on every stored message (journal metadata, appointment
# fields, resources, findings, the returned row): orjson, ~10x the standard library's speed.
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS


def _jsonb_encode(value: Any) -> bytes:
    return b"\x01" + orjson.dumps(value, option=_JSON_OPTIONS)


def _jsonb_decode(data: bytes) -> Any:
    return orjson.loads(memoryview(data)[1:])


def _json_encode(value: Any) -> bytes:
    return orjson.dumps(value, option=_JSON_OPTIONS)


async def _init_connection(conn: asyncpg.Connection) -> None:
    """json/jsonb as Python objects on every pooled connection (payloads are plain dicts).

    Binary format, so that jsonb columns inside composite values (a whole row returned by a
    function) decode too.
    """
    await conn.set_type_codec("jsonb", schema="pg_catalog", format="binary",
                              encoder=_jsonb_encode, decoder=_jsonb_decode)
    await conn.set_type_codec("json", schema="pg_catalog", format="binary",
                              encoder=_json_encode, decoder=orjson.loads)


async def _init_store_connection(conn: asyncpg.Connection) -> None:
    """``_init_connection``, and the outbox insert the unit of work sends with its COMMIT
    prepared (``deferred.prepare``): only the store's pool commits messages."""
    await _init_connection(conn)
    await deferred.prepare(conn)


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's RESET ALL round trip on release (an open transaction is still rolled back)."""


def failure_reason(exc: BaseException) -> str:
    """A bounded metric label for a database failure."""
    if isinstance(exc, (TimeoutError, asyncpg.QueryCanceledError)):
        return "timeout"
    if isinstance(exc, asyncpg.LockNotAvailableError):
        return "lock_timeout"
    if isinstance(exc, asyncpg.DeadlockDetectedError):
        return "deadlock"
    if isinstance(exc, (OSError, asyncpg.ConnectionDoesNotExistError,
                        asyncpg.CannotConnectNowError, asyncpg.InterfaceError)):
        return "connection"
    if isinstance(exc, asyncpg.PostgresError):
        return "query"
    return "other"


def unreachable(exc: BaseException) -> bool:
    """True for the failures that mean the database cannot be reached: a refused, lost or closed
    connection, a server starting or shutting down (not a timeout, nor a statement's error)."""
    if isinstance(exc, TimeoutError):
        return False
    if isinstance(exc, (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
                        asyncpg.AdminShutdownError, asyncpg.CrashShutdownError)):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)


class Availability:
    """Whether the database answers, as the store's users find it; said once each way in the log.

    The first failure that means the database cannot be reached (a refused or lost connection)
    logs one warning, ``database_unreachable``; while it lasts each message answered AR for it
    is counted (``failed(exc, refused=1)``) and logged at debug only; the first success after
    it logs one info line, ``database_recovered``, with that count and how long it lasted.
    Other failures (a statement error, a lock timeout) are not an outage: callers log them.
    """

    def __init__(self) -> None:
        self.down_since: float | None = None
        self.refused = 0

    def failed(self, exc: BaseException, *, refused: int = 0) -> bool:
        """Note a failure; True when it is the database being unreachable (then already logged)."""
        if not unreachable(exc):
            return False
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.refused = refused
            log.warning("database_unreachable", error=type(exc).__name__, detail=str(exc)[:200])
        else:
            self.refused += refused
            if refused:
                log.debug("database_still_unreachable", error=type(exc).__name__,
                          refused=self.refused)
        return True

    def ok(self) -> None:
        """The database answered: log its recovery once, if it was down."""
        if self.down_since is not None:
            seconds = round(time.monotonic() - self.down_since, 1)
            log.info("database_recovered", refused=self.refused, down_seconds=seconds)
            self.down_since = None
            self.refused = 0


class _PoolNoise(logging.Filter):
    """asyncpg's pool logs a warning with a traceback each time it fails to reconnect; while the
    database is down that is the outage ``Availability`` already reported: kept out of the log."""

    def __init__(self, availability: Availability) -> None:
        super().__init__()
        self.availability = availability

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and self.availability.failed(exc):
            log.debug("pool_reconnect_failed", error=type(exc).__name__)
            return False
        return True


class Store:
    """Database access for the engine: one pool, opened once by the composition root.

    Connection attempts are bounded by ``connect_timeout`` and each statement by
    ``command_timeout``, so a dead database turns into a prompt exception (the runner answers
    AR 207) instead of a hung ACK. The pool reconnects by itself when the database returns.

    The pool skips asyncpg's per-release ``RESET ALL``: do not leave session state on pooled
    connections (use ``SET LOCAL``, transaction-scoped advisory locks; LISTEN on a connection
    of your own); the one exception is the outbox insert every connection prepares at its start
    (``deferred.prepare``), never changed after. json/jsonb columns take and return Python objects.
    """

    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout: float) -> None:
        self.pool = pool
        self.acquire_timeout = acquire_timeout
        self._in_use = 0
        self.availability = Availability()
        self._noise = _PoolNoise(self.availability)
        logging.getLogger("asyncpg.pool").addFilter(self._noise)

    @classmethod
    async def open(cls, url: str, *, pool_min: int = 2, pool_max: int = 16,
                   connect_timeout: float = 5.0, command_timeout: float = 10.0,
                   lock_timeout: float | None = None, application_name: str = "radsched-engine",
                   ) -> Store:
        """Open the pool (``pool_min`` connections now). Raises when the database is unreachable."""
        lock_ms = int(1000 * (lock_timeout if lock_timeout is not None else command_timeout / 2))
        pool = await asyncpg.create_pool(
            url, min_size=pool_min, max_size=pool_max, timeout=connect_timeout,
            command_timeout=command_timeout, init=_init_store_connection, reset=_no_reset,
            server_settings={"application_name": application_name,
                             "lock_timeout": str(lock_ms),
                             "idle_in_transaction_session_timeout": str(int(command_timeout * 3000))})
        store = cls(pool, acquire_timeout=connect_timeout + command_timeout)
        metrics.POOL_SIZE.set(pool.get_size())
        return store

    async def close(self) -> None:
        logging.getLogger("asyncpg.pool").removeFilter(self._noise)
        await self.pool.close()
        metrics.POOL_SIZE.set(0)
        metrics.POOL_IN_USE.set(0)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection, acquired within the store's time bounds."""
        conn = await self.pool.acquire(timeout=self.acquire_timeout)
        self._in_use += 1
        metrics.POOL_IN_USE.set(self._in_use)
        try:
            yield conn
        finally:
            self._in_use -= 1
            metrics.POOL_IN_USE.set(self._in_use)
            await self.pool.release(conn)

    async def healthy(self, timeout: float = 2.0) -> bool:
        """True when a trivial query answers within ``timeout`` seconds (also refreshes the
        pool-size gauge; readiness probes call this regularly)."""
        metrics.POOL_SIZE.set(self.pool.get_size())
        try:
            async with asyncio.timeout(timeout), self.connection() as conn:
                await conn.fetchval("SELECT 1")
        except Exception as exc:
            self.availability.failed(exc)
            return False
        self.availability.ok()
        return True

    def unit_of_work(self, channel: str, *, writers: int = 2, max_batch: int = 32) -> UnitOfWork:
        """The channel's unit of work: group commit over this store (``store.group``), with up to
        ``writers`` transactions in flight, each of up to ``max_batch`` messages."""
        from .group import GroupUnitOfWork

        return GroupUnitOfWork(self, channel, writers=writers, max_batch=max_batch)


class UnitOfWork:
    """The transaction around a channel's transactional stages, and its message journal.

    ``transaction(exchange)``: acquire a connection, BEGIN, set ``exchange.tx``; on exit with an
    accepted outcome the journal row is inserted and the transaction commits. (The persist stage
    writes the row in its own statement to save a round trip: it sets ``exchange.journal_id``
    and ``exchange.data["journaled_warnings"]``; warnings added after it are written here.) With any other
    outcome the whole transaction is rolled back and the journal row alone is inserted and
    committed. A failure to journal or commit propagates (the runner answers AR 207).
    ``exchange.journal_id`` is set once the row is committed, and is None otherwise.
    """

    def __init__(self, store: Store, channel: str) -> None:
        self.store = store
        self.channel = channel

    @asynccontextmanager
    async def transaction(self, exchange: Exchange) -> AsyncIterator[None]:
        started = time.perf_counter()
        try:
            async with self.store.connection() as conn:
                tx = conn.transaction()
                await tx.start()
                exchange.tx = conn
                try:
                    yield
                except BaseException:
                    exchange.journal_id = None
                    if not conn.is_closed():
                        await tx.rollback()
                    raise
                finally:
                    exchange.tx = None
                outcome = exchange.outcome or Outcome.ACCEPTED
                if outcome.accepted:
                    await self._finish_accepted(conn, exchange, outcome)
                    await tx.commit()
                else:
                    exchange.journal_id = None
                    await tx.rollback()
                    exchange.journal_id = await self._insert(conn, exchange, outcome)
        except BaseException as exc:
            exchange.journal_id = None
            self._failed(exc)
            raise
        self.store.availability.ok()
        metrics.JOURNAL_ROWS.labels(outcome.value).inc()
        metrics.STORE_SECONDS.labels("transaction").observe(time.perf_counter() - started)

    async def _finish_accepted(self, conn: asyncpg.Connection, exchange: Exchange,
                               outcome: Outcome, *, flush: bool = True) -> None:
        """Journal an accepted exchange (unless persist did) and write what its stages deferred."""
        if flush:
            await deferred.flush(conn, *deferred.gather([exchange]))
        if exchange.journal_id is None:
            exchange.journal_id = await self._insert(conn, exchange, outcome)
        elif len(exchange.warnings) != exchange.data.get("journaled_warnings", 0):
            # A stage after persist added warnings to an already written row.
            warnings = journal.meta(exchange, outcome)["warnings"]
            await conn.execute("UPDATE hl7_messages SET warnings = $2 WHERE id = $1",
                               exchange.journal_id, warnings)

    async def record(self, exchange: Exchange) -> None:
        """Journal a message whose outcome was decided before any transaction (autocommit)."""
        started = time.perf_counter()
        outcome = exchange.outcome or Outcome.ACCEPTED
        try:
            async with self.store.connection() as conn:
                exchange.journal_id = await self._insert(conn, exchange, outcome)
        except BaseException as exc:
            exchange.journal_id = None
            self._failed(exc)
            raise
        self.store.availability.ok()
        metrics.JOURNAL_ROWS.labels(outcome.value).inc()
        metrics.STORE_SECONDS.labels("record").observe(time.perf_counter() - started)

    @staticmethod
    async def _insert(conn: asyncpg.Connection, exchange: Exchange, outcome: Outcome) -> int:
        return await conn.fetchval(journal.INSERT, journal.meta(exchange, outcome), exchange.raw,
                                   journal.content_hash(exchange))

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, Exception):
            metrics.STORE_FAILURES.labels(failure_reason(exc)).inc()
            self.store.availability.failed(exc)

    def refused(self, exc: BaseException) -> bool:
        """The pipeline answers AR for ``exc`` (nothing committed): True when that is the
        database being unreachable, already in the log once (``Availability``), so the caller
        logs its own line at debug; the message is counted for the recovery line."""
        return self.store.availability.failed(exc, refused=1)

