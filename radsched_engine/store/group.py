"""Group commit: the transactional stages of several waiting exchanges in one transaction, one commit.

Each MLLP connection has one message in flight, so exchanges waiting here come from different
connections and per-connection order holds whatever the grouping. A writer takes every exchange
waiting (up to ``max_batch``) and, on one pooled connection:

    BEGIN (with a short lock_timeout)
    each member's stages, their persist calls (each writes its journal row with its effects)
        held and sent together: new bookings that cannot see each other as one set-based
        statement, others one by one in member order (``_Parking``)
    what the members' stages deferred (outbox rows, findings) + COMMIT, in one round trip

and only then releases the members, whose ACKs the channel writes (AA only after commit). No
savepoints (each would cost a round trip per message): when a member's outcome is not accepted
(rejected; AR for a lock waited on too long or a deadlock; an internal error) the whole batch is
rolled back, nothing of it committed (the members after it may have run: they start again from
their state before too). Then the members before it run again as a batch, it runs
alone in a transaction of its own (its effects rolled back, its journal row committed: the
``UnitOfWork.transaction`` path), and the members after it go back to the head of the queue: a
failing member never poisons the others, at the price of doing the work before it twice (stage
metrics count those runs twice). Every body is run again from the exchange's state before its
first run (``_Snapshot``). If a statement fails on the batch's connection (a check at COMMIT,
say) nothing is committed and every member runs again alone; if the connection itself fails
(the database went away) nothing of the batch is committed and every member gets the
exception at once (AR 207: the senders resend).

The task that finds a writer free leads the transaction itself (after one turn of the event
loop, so that exchanges ready at the same moment join it); with one exchange waiting (one
connection, or a quiet moment) that is exactly ``UnitOfWork.transaction`` in the caller's
task, with the outbox rows and findings riding on the COMMIT. A transaction holding other
tasks' messages runs shielded from the leading task's cancellation. ``writers`` batches may be
in flight at once (on different connections), so the engine's CPU work overlaps the
database's; two batches locking the same resources in different orders wait at most
``BATCH_LOCK_TIMEOUT_MS`` for each other.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from .. import metrics
from ..exchange import Exchange, Outcome
from . import deferred
from .appointments import PersistCall, persist_rows, persist_set, set_wise
from .db import Store, UnitOfWork

Body = Callable[[Exchange], Awaitable[None]]

# A member waiting longer than this for a lock inside a batch gives up (AR 206 inside the
# batch) and is run again alone with the store's normal lock_timeout: two batches that lock
# the same resources in different orders never wait on each other for long.
BATCH_LOCK_TIMEOUT_MS = 200


@dataclass(slots=True)
class _Member:
    exchange: Exchange
    body: Body
    done: asyncio.Future[None]


@dataclass(slots=True)
class _Snapshot:
    """What the transactional stages may change on an exchange, to run it again from scratch."""

    outcome: Outcome | None
    problem: Any
    user_text: str | None
    warnings: list[Any]
    data: dict[str, Any]
    journal_id: int | None
    replay_ack_code: str | None

    @classmethod
    def of(cls, ex: Exchange) -> _Snapshot:
        return cls(ex.outcome, ex.problem, ex.user_text, list(ex.warnings), dict(ex.data),
                   ex.journal_id, ex.replay_ack_code)

    def restore(self, ex: Exchange) -> None:
        ex.outcome, ex.problem, ex.user_text = self.outcome, self.problem, self.user_text
        ex.warnings, ex.data = list(self.warnings), dict(self.data)
        ex.journal_id, ex.replay_ack_code, ex.tx = self.journal_id, self.replay_ack_code, None


class GroupUnitOfWork(UnitOfWork):
    """``UnitOfWork`` plus ``run``: the pipeline's entry point, which groups waiting exchanges."""

    def __init__(self, store: Store, channel: str, *, max_batch: int = 32, writers: int = 2) -> None:
        super().__init__(store, channel)
        self.max_batch = max(1, max_batch)
        self.writers = max(1, writers)
        self._queue: deque[_Member] = deque()
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._begin = f"BEGIN; SET LOCAL lock_timeout = {BATCH_LOCK_TIMEOUT_MS}"

    async def run(self, exchange: Exchange, body: Body) -> None:
        """Run ``body`` (the transactional stages) for ``exchange`` inside a transaction, journal
        the outcome and commit; returns once committed, raises when nothing could be committed."""
        member = _Member(exchange, body, asyncio.get_running_loop().create_future())
        self._queue.append(member)
        if self._running < self.writers:
            # Lead one transaction from this task. Let the exchanges that are ready to run now
            # join it first (one turn of the event loop), then take everything waiting.
            self._running += 1
            try:
                await asyncio.sleep(0)
                if self._queue and not member.done.done():
                    take = min(len(self._queue), self.max_batch)
                    batch = [self._queue.popleft() for _ in range(take)]
                    if batch == [member]:
                        await self._settle(member, self._alone(exchange, body))
                    else:                      # others' messages: not cancelled with this task
                        await asyncio.shield(self._run(batch))
            finally:
                self._running -= 1
                self._wake()
        await member.done

    def _wake(self) -> None:
        """Start a writer task when exchanges wait and fewer than ``writers`` are busy."""
        while self._queue and self._running < self.writers:
            self._running += 1
            task = asyncio.get_running_loop().create_task(self._writer())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _writer(self) -> None:
        try:
            while self._queue:
                take = min(len(self._queue), self.max_batch)
                await self._run([self._queue.popleft() for _ in range(take)])
        finally:
            self._running -= 1
            self._wake()

    async def _run(self, members: list[_Member]) -> None:
        try:
            if len(members) == 1:
                await self._settle(members[0], self._alone(members[0].exchange, members[0].body))
            elif members:
                await self._batch(members)
        except Exception as exc:           # a bug here must not leave a sender waiting forever
            for member in members:
                if not member.done.done():
                    member.done.set_exception(exc)

    async def _alone(self, exchange: Exchange, body: Body) -> None:
        """``UnitOfWork.transaction`` for one body, with the outbox rows and COMMIT in one round
        trip: BEGIN, the stages, [journal], outbox + COMMIT; or ROLLBACK and the journal row."""
        started = time.perf_counter()
        try:
            async with self.store.connection() as conn:
                await conn.execute("BEGIN")
                try:
                    exchange.tx = conn
                    try:
                        await body(exchange)
                    finally:
                        exchange.tx = None
                    outcome = exchange.outcome or Outcome.ACCEPTED
                    if outcome.accepted:
                        await self._finish_accepted(conn, exchange, outcome, flush=False)
                        await self._commit(conn, [exchange])
                    else:
                        exchange.journal_id = None
                        await conn.execute("ROLLBACK")
                        exchange.journal_id = await self._insert(conn, exchange, outcome)
                except BaseException:
                    if not conn.is_closed() and conn.is_in_transaction():
                        await _quietly(conn.execute("ROLLBACK"))
                    raise
        except BaseException as exc:
            exchange.journal_id = None
            self._failed(exc)
            raise
        self.store.availability.ok()
        metrics.JOURNAL_ROWS.labels(outcome.value).inc()
        metrics.STORE_SECONDS.labels("transaction").observe(time.perf_counter() - started)

    @staticmethod
    async def _commit(conn: Any, exchanges: list[Exchange]) -> None:
        """COMMIT, with the writes the exchanges' stages deferred (``store.deferred``)."""
        rows, post = deferred.gather(exchanges)
        sql = deferred.commit_sql(rows, post)
        if not sql:
            await deferred.flush(conn, rows, post)
            sql = "COMMIT"
        elif rows:
            await deferred.ready(conn)
        try:
            await conn.execute(sql)
        except asyncpg.InvalidSQLStatementNameError:
            deferred.forget(conn)      # the statement went missing: prepared again on the retry
            raise

    @staticmethod
    async def _settle(member: _Member, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception as exc:
            if not member.done.done():
                member.done.set_exception(exc)
        else:
            if not member.done.done():
                member.done.set_result(None)

    async def _batch(self, batch: list[_Member]) -> None:
        started = time.perf_counter()
        snapshots = [_Snapshot.of(m.exchange) for m in batch]
        outcomes: list[Outcome] = []
        broken = True                      # no connection, or it died: the database is in trouble
        try:
            async with self.store.connection() as conn:
                await conn.execute(self._begin)
                try:
                    parking = _Parking(conn)
                    for i, member in enumerate(batch):
                        ex = member.exchange
                        if i and not _reads_safely(ex):
                            # The members before it done, then the findings they left for the
                            # commit, before a message that could read them (a round trip each).
                            await parking.settle()
                            await deferred.flush(conn, [], deferred.take_post(
                                m.exchange for m in batch[:i]))
                        await parking.start(i, member.body, ex)
                        if ex.outcome is not None and not ex.outcome.accepted:
                            break                  # the members after it wait for the next batch
                    await parking.settle()
                    failure = next((e for e in map(asyncio.Task.exception, parking.tasks) if e), None)
                    if failure is not None:
                        raise failure
                    for member in batch:
                        outcome = member.exchange.outcome or Outcome.ACCEPTED
                        if not outcome.accepted:
                            break
                        outcomes.append(outcome)
                    if len(outcomes) == len(batch):
                        for member, outcome in zip(batch, outcomes, strict=True):
                            await self._finish_accepted(conn, member.exchange, outcome, flush=False)
                        await self._commit(conn, [m.exchange for m in batch])
                    else:
                        await conn.execute("ROLLBACK")
                except BaseException:
                    broken = conn.is_closed()
                    if not broken and conn.is_in_transaction():
                        await _quietly(conn.execute("ROLLBACK"))
                    broken = broken or conn.is_closed()
                    raise
        except Exception as exc:
            self._failed(exc)
            if not broken:
                # A statement failed on a live connection (e.g. a check at COMMIT): nothing was
                # committed; each member again alone, so only the one at fault fails.
                for member, snapshot in zip(batch, snapshots, strict=True):
                    snapshot.restore(member.exchange)
                for member in batch:
                    await self._run([member])
                return
            for member in batch:
                member.exchange.journal_id = None
                if not member.done.done():
                    member.done.set_exception(exc)
            return
        self.store.availability.ok()
        if len(outcomes) == len(batch):
            seconds = time.perf_counter() - started
            for member, outcome in zip(batch, outcomes, strict=True):
                metrics.JOURNAL_ROWS.labels(outcome.value).inc()
                metrics.STORE_SECONDS.labels("batch").observe(seconds)
                if not member.done.done():
                    member.done.set_result(None)
            return
        # Member ``failed`` was not accepted and nothing was committed: the members before it
        # again (as a batch), it alone, the members after it back to the head of the queue
        # (every member ran: each starts again from its state before).
        failed = len(outcomes)
        for member, snapshot in zip(batch, snapshots, strict=True):
            snapshot.restore(member.exchange)
        self._queue.extendleft(reversed(batch[failed + 1:]))
        await self._run(batch[:failed])
        await self._run([batch[failed]])


class _Parking:
    """The members of one batch, run so that their persist calls can be written together.

    Members start in order, each on its own task, with a ``_MemberConnection`` as
    ``exchange.tx``. A member's persist call (``appointments.persist_rows``) parks there and
    the next member starts. The parked calls are sent when a member needs the connection for
    anything else, before a message that could read the findings they leave (``settle``), and
    at the end: as one statement when they cannot see each other (``appointments.set_wise``:
    new bookings with no key, message, resource-day or patient in common; each still gets its
    stored neighbours, and the database says when a redelivery or a stored appointment needs the
    per-call path), else one by one in member order, exactly as if each member had run alone in
    turn. A member's persist call must be its last statement in the transaction (the stages
    after persist only defer their writes to the commit): a member that uses the connection
    after its parked call fails with an internal error, and the batch is run again member by
    member.
    """

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.tasks: list[asyncio.Task[None]] = []
        self._waiting: list[tuple[int, PersistCall, asyncio.Future[Any]]] = []
        self._signal: asyncio.Future[None] | None = None

    async def start(self, index: int, body: Body, exchange: Exchange) -> None:
        """Run member ``index``'s body until it parks or ends."""
        loop = asyncio.get_running_loop()
        signal = self._signal = loop.create_future()
        exchange.tx = _MemberConnection(self, index)

        async def run() -> None:
            try:
                await body(exchange)
            finally:
                exchange.tx = None

        task = loop.create_task(run())
        task.add_done_callback(lambda _: signal.done() or signal.set_result(None))
        self.tasks.append(task)
        await signal

    async def park(self, index: int, call: PersistCall) -> list[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((index, call, future))
        if self._signal is not None and not self._signal.done():
            self._signal.set_result(None)
        return await future

    async def settle(self, *, everyone: bool = True) -> None:
        """Send the parked calls and let their members (``everyone``: all members) finish."""
        waiting, self._waiting = self._waiting, []
        if waiting:
            calls = [call for _, call, _ in waiting]
            try:
                results = (await persist_set(self.conn, calls)
                           if len(calls) > 1 and set_wise(calls) else None)
                if results is None:            # one by one, in member order
                    results = [await persist_rows(self.conn, call) for call in calls]
                    metrics.BATCH_WRITES.labels("one_by_one").inc(len(calls))
                else:
                    metrics.BATCH_WRITES.labels("set").inc(len(calls))
            except Exception as exc:       # each member's stage answers it (206 / 207)
                for _, _, future in waiting:
                    future.set_exception(exc)
            else:
                for (_, _, future), rows in zip(waiting, results, strict=True):
                    future.set_result(rows)
        if everyone:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        elif waiting:
            await asyncio.gather(*(self.tasks[i] for i, _, _ in waiting), return_exceptions=True)


def _after_ready(name: str) -> Any:
    """A ``_MemberConnection`` method: the batch connection's ``name`` once the parked calls
    before it are written."""
    async def method(self: _MemberConnection, *args: Any, **kwargs: Any) -> Any:
        await self._ready()
        return await getattr(self._parking.conn, name)(*args, **kwargs)

    method.__name__ = name
    return method


class _MemberConnection:
    """A batch member's view of the batch's connection (``_Parking``)."""

    __slots__ = ("_called", "_index", "_parking")

    def __init__(self, parking: _Parking, index: int) -> None:
        self._parking = parking
        self._index = index
        self._called = False

    async def park(self, call: PersistCall) -> list[Any]:
        self._unused()
        self._called = True
        return await self._parking.park(self._index, call)

    async def _ready(self) -> None:
        self._unused()
        if self._parking._waiting:
            await self._parking.settle(everyone=False)

    def _unused(self) -> None:
        if self._called:
            raise RuntimeError("a batch member used the connection after its persist call")

    execute = _after_ready("execute")
    executemany = _after_ready("executemany")
    fetch = _after_ready("fetch")
    fetchrow = _after_ready("fetchrow")
    fetchval = _after_ready("fetchval")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parking.conn, name)


def _reads_safely(exchange: Exchange) -> bool:
    """True when ``exchange`` cannot read what earlier members deferred: an S12 (a booking) only
    writes new or inactive appointments, while deferred findings go to active ones."""
    return exchange.message_type == "SIU^S12"


async def _quietly(work: Awaitable[Any]) -> None:
    try:
        await work
    except Exception:
        pass


__all__ = ["BATCH_LOCK_TIMEOUT_MS", "GroupUnitOfWork"]
