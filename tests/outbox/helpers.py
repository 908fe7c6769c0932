"""Outbox test helpers: a controllable clock, a scripted handler, row reads and enqueueing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from radsched_engine.outbox import Delivery, OutboxRow
from radsched_engine.store.outbox import enqueue


class Clock:
    """``datetime.now(UTC)`` plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


class ScriptedHandler:
    """An ``OutboxHandler`` answering from a script (default ``done``), recording every call."""

    def __init__(self, kind: str = "test", *, concurrency: int = 4, max_attempts: int = 3) -> None:
        self.kind = kind
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.script: list[Delivery | Exception | Callable[[OutboxRow], Any]] = []
        self.reconcile_script: list[Delivery | None] = []
        self.delivered: list[OutboxRow] = []
        self.reconciled: list[OutboxRow] = []
        self.closed = False
        self.gate: asyncio.Event | None = None     # when set, deliveries wait for it
        self.in_flight = 0
        self.peak = 0

    async def deliver(self, row: OutboxRow) -> Delivery:
        self.delivered.append(row)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            step = self.script.pop(0) if self.script else Delivery("done", {"ok": row.id})
            if isinstance(step, Exception):
                raise step
            if callable(step):
                step = await step(row)
            return step
        finally:
            self.in_flight -= 1

    async def reconcile(self, row: OutboxRow) -> Delivery | None:
        self.reconciled.append(row)
        return self.reconcile_script.pop(0) if self.reconcile_script else None

    async def close(self) -> None:
        self.closed = True


async def add(store: Any, kind: str, key: str, payload: dict[str, Any] | None = None, **kw: Any) -> int:
    async with store.connection() as conn, conn.transaction():
        assert await enqueue(conn, kind, key, payload or {}, **kw)
        return await conn.fetchval("SELECT id FROM outbox WHERE dedupe_key = $1", key)


async def rows(url: str, where: str = "true", *args: Any) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(url)
    try:
        return [dict(r) for r in await conn.fetch(f"SELECT * FROM outbox WHERE {where} ORDER BY id", *args)]
    finally:
        await conn.close()


async def row(url: str, row_id: int) -> dict[str, Any]:
    found = await rows(url, "id = $1", row_id)
    assert found, f"no outbox row {row_id}"
    return found[0]
