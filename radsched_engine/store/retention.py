"""Retention (the data pruner): old journal bytes, journal rows and finished outbox rows, in short batches.

Three passes, each walking its table by primary key, oldest first, ``batch_size`` rows per
short transaction (one scan, one UPDATE/DELETE over that id range, one mark):

| pass          | table          | action        | rows                                              |
|---------------|----------------|---------------|---------------------------------------------------|
| `journal`     | `hl7_messages` | `deleted`     | `received_at` older than `journal_days`           |
| `journal_raw` | `hl7_messages` | `raw_cleared` | `received_at` older than `raw_days`: `raw` = ''   |
| `outbox`      | `outbox`       | `deleted`     | sent/skipped/dead/cancelled, unchanged for `outbox_days` |

A pass stops at the first row young enough to keep (ids follow arrival closely, so the rows
after it are young too; a row slightly out of order waits for the next run). Its mark (table
``retention_marks``) is where the next run starts: everything below it is done. The outbox mark
stops at the first row still in flight (pending, retry, sending) or too young; rows after
it are still pruned, and the row holding the mark is looked at again each run until it
finishes.

What is never pruned, and why it is safe:
- Outbox rows not finished (pending, retry, sending): their effect has not happened yet.
- Journal rows inside `journal_days`: redelivery detection reads them (channel, sender,
  MSH-10, content hash; the hash stays when only `raw` is cleared). A resend older than
  `journal_days` is handled as a new message: an S12 for a booked appointment gets AE 205, an
  update is applied again (same content: same state) or ignored as stale.
- Appointments and orders keep their ``last_message_id``: it is a plain number (no foreign
  key), used as the row's version stamp, and may name a journal row that has been pruned.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from .. import metrics
from .db import failure_reason

LOGGER = "radsched.retention"

FINISHED = ("sent", "skipped", "dead", "cancelled")
_FINISHED_SQL = ", ".join(f"'{s}'" for s in FINISHED)


@dataclass(frozen=True, slots=True)
class Pass:
    """One pruning pass: which rows it looks at and what it does to them.

    ``scan`` ($1 = first id, $2 = cutoff, $3 = limit) returns, by id: ``old`` (before the
    cutoff: the pass goes on), ``act`` (this row is changed now) and ``settled`` (nothing left
    to do for this row once the batch commits: the mark may pass it). ``apply`` ($1..$2 = id
    range, $3 = cutoff) re-checks every condition, so a row that changed in between is left.
    """

    name: str
    table: str
    action: str
    scan: str
    apply: str


JOURNAL = Pass(
    "journal", "hl7_messages", "deleted",
    scan="SELECT id, received_at < $2 AS old, true AS act, true AS settled FROM hl7_messages "
         "WHERE id >= $1 ORDER BY id LIMIT $3",
    apply="DELETE FROM hl7_messages WHERE id >= $1 AND id <= $2 AND received_at < $3")
JOURNAL_RAW = Pass(
    "journal_raw", "hl7_messages", "raw_cleared",
    scan="SELECT id, received_at < $2 AS old, octet_length(raw) > 0 AS act, true AS settled "
         "FROM hl7_messages WHERE id >= $1 ORDER BY id LIMIT $3",
    apply="UPDATE hl7_messages SET raw = ''::bytea WHERE id >= $1 AND id <= $2 "
          "AND received_at < $3 AND octet_length(raw) > 0")
OUTBOX = Pass(
    "outbox", "outbox", "deleted",
    scan=f"SELECT id, created_at < $2 AS old, "
         f"status IN ({_FINISHED_SQL}) AND updated_at < $2 AS act, "
         f"status IN ({_FINISHED_SQL}) AND updated_at < $2 AS settled "
         f"FROM outbox WHERE id >= $1 ORDER BY id LIMIT $3",
    apply=f"DELETE FROM outbox WHERE id >= $1 AND id <= $2 AND status IN ({_FINISHED_SQL}) "
          f"AND updated_at < $3")

_MARK = "SELECT next_id FROM retention_marks WHERE pass = $1"
_SAVE_MARK = """
INSERT INTO retention_marks (pass, next_id, updated_at) VALUES ($1, $2, now())
ON CONFLICT (pass) DO UPDATE SET next_id = EXCLUDED.next_id, updated_at = EXCLUDED.updated_at
"""


@dataclass(slots=True)
class PruneReport:
    """What one run did (or, dry, would do): rows per (table, action), and whether it finished."""

    dry_run: bool = False
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    complete: bool = True

    def add(self, table: str, action: str, rows: int) -> None:
        key = (table, action)
        self.counts[key] = self.counts.get(key, 0) + rows

    def count(self, table: str, action: str) -> int:
        return self.counts.get((table, action), 0)

    def lines(self) -> list[str]:
        """One line per pass run, for the CLI: ``hl7_messages  raw_cleared  12``."""
        if not self.counts:
            return ["nothing to prune: no retention period is configured (engine.yaml, retention:)"]
        done = "would be" if self.dry_run else "done"
        out = [f"{'table':<14} {'action':<12} {done}"]
        out += [f"{table:<14} {action:<12} {rows}" for (table, action), rows in self.counts.items()]
        if not self.complete:
            out.append("(stopped before the end)")
        return out


def passes(settings: Any, now: datetime) -> list[tuple[Pass, datetime]]:
    """The configured passes with their cutoffs, in the order they run (rows deleted first,
    so the raw pass does not empty bytes of rows about to go)."""
    out: list[tuple[Pass, datetime]] = []
    for days, prune_pass in ((settings.journal_days, JOURNAL), (settings.raw_days, JOURNAL_RAW),
                             (settings.outbox_days, OUTBOX)):
        if days is not None:
            out.append((prune_pass, now - timedelta(days=days)))
    return out


async def prune(store: Any, settings: Any, *, dry_run: bool = False, now: datetime | None = None,
                stopping: asyncio.Event | None = None) -> PruneReport:
    """One run of every configured pass; returns the counts. ``stopping`` set = end after the
    current batch (``complete`` False). Database errors propagate (the caller logs them)."""
    now = datetime.now(UTC) if now is None else now
    report = PruneReport(dry_run=dry_run)
    floor = 0
    for prune_pass, cutoff in passes(settings, now):
        report.add(prune_pass.table, prune_pass.action, 0)
        end = await _run_pass(store, prune_pass, cutoff, settings.batch_size, report,
                              dry_run=dry_run, floor=floor if prune_pass is JOURNAL_RAW else 0,
                              stopping=stopping)
        if end is None:
            report.complete = False
            break
        if prune_pass is JOURNAL:
            floor = end          # a dry run's raw pass must not count rows "already deleted"
    return report


async def _run_pass(store: Any, prune_pass: Pass, cutoff: datetime, batch_size: int,
                    report: PruneReport, *, dry_run: bool, floor: int,
                    stopping: asyncio.Event | None) -> int | None:
    """Batches until the first young row or the table's end; returns where it stopped (None
    when told to stop first)."""
    async with store.connection() as conn:
        mark = await conn.fetchval(_MARK, prune_pass.name) or 0
        first = await conn.fetchval(f"SELECT min(id) FROM {prune_pass.table}")
    if first is None:
        return floor
    cursor = max(mark, first, floor)
    blocked = False             # the mark stays at the first row this pass could not settle
    while True:
        if stopping is not None and stopping.is_set():
            return None
        async with store.connection() as conn, conn.transaction():
            rows = await conn.fetch(prune_pass.scan, cursor, cutoff, batch_size)
            prefix = []
            for row in rows:
                if not row["old"]:
                    break
                prefix.append(row)
            done = len(prefix) < len(rows) or len(rows) < batch_size
            if not prefix:
                return cursor
            last = prefix[-1]["id"]
            if dry_run:
                changed = sum(1 for r in prefix if r["act"])
            elif any(r["act"] for r in prefix):
                status = await conn.execute(prune_pass.apply, cursor, last, cutoff)
                changed = int(status.rsplit(" ", 1)[-1])
            else:
                changed = 0
            if not blocked:
                unsettled = next((r["id"] for r in prefix if not r["settled"]), None)
                blocked = unsettled is not None
                # Not the young row's id: an id between it and ``last`` may belong to a
                # transaction still in flight (only after an idle spell of the whole window).
                mark = unsettled if blocked else last + 1
                if not dry_run:
                    await conn.execute(_SAVE_MARK, prune_pass.name, mark)
        report.add(prune_pass.table, prune_pass.action, changed)
        if changed and not dry_run:
            metrics.RETENTION_ROWS.labels(prune_pass.table, prune_pass.action).inc(changed)
        cursor = last + 1
        if done:
            return cursor
        await asyncio.sleep(0)      # let the hot path's tasks run between batches


class Pruner:
    """The engine's retention task: a run ``start_delay`` seconds after start, then every
    ``interval`` seconds; one info line per run, a warning when a run fails (the next run
    tries again); ``stop()`` ends it after the current batch."""

    def __init__(self, store: Any, settings: Any) -> None:
        self.store = store
        self.settings = settings
        self.runs = 0               # finished runs, successful or not (for tests and health)
        self.failures = 0
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ran = asyncio.Condition()

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="retention")

    async def stop(self, grace: float = 5.0) -> None:
        """End after the current batch; a batch still waiting after ``grace`` seconds (a
        database that does not answer) is cancelled, and its transaction rolled back."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=grace)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_runs(self, count: int) -> None:
        """Until at least ``count`` runs have finished (tests)."""
        async with self._ran:
            await self._ran.wait_for(lambda: self.runs >= count)

    async def _loop(self) -> None:
        delay = self.settings.start_delay
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                return
            except TimeoutError:
                pass
            await self.run_once()
            delay = self.settings.interval

    async def run_once(self) -> PruneReport | None:
        """One logged run; None when it failed (logged as a warning, never raised)."""
        started = time.perf_counter()
        log = structlog.get_logger(LOGGER)     # a fresh proxy: once an hour, follows configure()
        report: PruneReport | None = None
        try:
            report = await prune(self.store, self.settings, stopping=self._stopping)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failures += 1
            log.warning("retention_failed", error=type(exc).__name__, reason=failure_reason(exc))
        else:
            if report.complete:
                metrics.RETENTION_LAST_SUCCESS.set(time.time())
            log.info("retention_run", complete=report.complete,
                     ms=round(1000 * (time.perf_counter() - started)),
                     **{f"{t}_{a}": n for (t, a), n in report.counts.items()})
        async with self._ran:
            self.runs += 1
            self._ran.notify_all()
        return report
