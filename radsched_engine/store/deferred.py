"""Writes a transaction's stages leave for its end (outbox rows, conflict findings), sent with COMMIT.

A stage adds items to its exchange (``add``); the unit of work gathers those of every message
it commits and sends them in the same simple-protocol query as the COMMIT (``commit_sql``), so
they cost no round trip of their own: ``SELECT radsched_finish(<post>, <outbox>); COMMIT``
(migration 0303). Items of a message whose effects are rolled back are dropped with it. Items
live in ``exchange.data`` as tuples replaced on each add, so a shallow copy of ``data`` is a
safe snapshot.

``POST`` items (``("conflicts", {id, value})`` / ``("links", {key, strip, add})``) are findings
of bookings whose check ran in the same call as their write; the unit of work also writes them
(``flush``) before any later message of the transaction that could read them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg
import orjson

OUTBOX = "deferred_outbox"        # exchange.data key: outbox rows (radsched_enqueue's shape)
POST = "deferred_post"            # exchange.data key: (kind, item) pairs for radsched_finish
_TAG = "$radsched_deferred$"
_FLUSH = "SELECT radsched_finish($1::jsonb, $2::jsonb)"


def add(exchange: Any, key: str, item: Any) -> None:
    exchange.data[key] = (*exchange.data.get(key, ()), item)


def gather(exchanges: Iterable[Any]) -> tuple[list[dict[str, Any]], dict[str, list[Any]] | None]:
    """(outbox rows, post document or None) of ``exchanges``, in order."""
    rows: list[dict[str, Any]] = []
    post: dict[str, list[Any]] | None = None
    for ex in exchanges:
        data = ex.data
        rows.extend(data.get(OUTBOX, ()))
        for kind, item in data.get(POST, ()):
            if post is None:
                post = {"conflicts": [], "links": []}
            post[kind].append(item)
    return rows, post


def take_post(exchanges: Iterable[Any]) -> dict[str, list[Any]] | None:
    """The post document of ``exchanges``, removing their post items (for an early ``flush``)."""
    post: dict[str, list[Any]] | None = None
    for ex in exchanges:
        for kind, item in ex.data.pop(POST, ()):
            if post is None:
                post = {"conflicts": [], "links": []}
            post[kind].append(item)
    return post


def commit_sql(rows: list[dict[str, Any]], post: dict[str, list[Any]] | None = None) -> str:
    """``COMMIT``, preceded by the deferred writes when there are any: one round trip.

    They travel as dollar-quoted JSON literals (nothing to escape); in the rare
    case the JSON holds the quote tag, the caller gets ``""`` and must ``flush`` first and
    commit separately. If the writes fail the COMMIT in the same query string is not run: the
    transaction is left failed, for the caller to roll back.
    """
    if not rows and post is None:
        return "COMMIT"
    parts = []
    for value in (post, rows or None):
        text = "NULL" if value is None else orjson.dumps(
            value, option=orjson.OPT_NON_STR_KEYS).decode()
        if _TAG in text:
            return ""
        parts.append("NULL" if value is None else f"{_TAG}{text}{_TAG}::jsonb")
    return f"SELECT radsched_finish({parts[0]}, {parts[1]}); COMMIT"


async def flush(conn: asyncpg.Connection, rows: list[dict[str, Any]],
                post: dict[str, list[Any]] | None = None) -> None:
    """Send deferred writes now, in ``conn``'s transaction (one round trip)."""
    if rows or post is not None:
        await conn.fetchval(_FLUSH, post, rows or None)
