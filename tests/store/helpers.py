"""Test helpers for store tests: exchanges from raw HL7 text, journal reads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from radsched_engine.exchange import Exchange
from radsched_engine.store.outbox import take


def hl7(*segments: str) -> bytes:
    return ("\r".join(segments) + "\r").encode()


def siu(trigger: str, control_id: str, *rest: str, app: str = "RIS", facility: str = "RAD",
        when: str = "20250101120000") -> bytes:
    return hl7(f"MSH|^~\\&|{app}|{facility}|RADSCHED|HOSP|{when}||SIU^{trigger}^SIU_S12|{control_id}|P|2.5",
               *rest)


def exchange(raw: bytes, channel: str = "scheduling") -> Exchange:
    """An exchange as the listener makes it (unparsed: the store reads MSH from the bytes)."""
    return Exchange(raw=raw, channel=channel, peer="127.0.0.1:50000", received_at=datetime.now(UTC))


async def journal_rows(url: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(url)
    try:
        return [dict(r) for r in await conn.fetch("SELECT * FROM hl7_messages ORDER BY id")]
    finally:
        await conn.close()


async def fetch(url: str, query: str, *args: Any) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(url)
    try:
        return [dict(r) for r in await conn.fetch(query, *args)]
    finally:
        await conn.close()


async def take_intake(url: str) -> int:
    """Move every row of the outbox's intake into the outbox, as the worker does before it claims
    (stages queue their rows in the intake); returns how many left the intake."""
    conn = await asyncpg.connect(url)
    try:
        total = 0
        for kind in [r["kind"] for r in await conn.fetch("SELECT DISTINCT kind FROM outbox_intake")]:
            while moved := await take(conn, kind, 1000):
                total += moved
        return total
    finally:
        await conn.close()


async def outbox_rows(url: str, query: str, *args: Any) -> list[dict[str, Any]]:
    """``fetch`` of an outbox query once the intake is moved into the outbox (``take_intake``)."""
    await take_intake(url)
    return await fetch(url, query, *args)
