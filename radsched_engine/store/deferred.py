"""Writes a transaction's stages leave for its end (outbox rows, conflict findings), sent with COMMIT.

A stage adds items to its exchange (``add``); the unit of work gathers those of every message
it commits and sends them in the same simple-protocol query as the COMMIT (``commit_sql``), so
they cost no round trip of their own: ``[SELECT radsched_finish(<post>, NULL);] [INSERT INTO
outbox ... VALUES ...;] COMMIT`` (migration 0303 for the post document). The outbox rows go in
a plain INSERT rather than through ``radsched_finish``/``radsched_enqueue``: measured on the
embedded server, one text's row cost PostgreSQL ~30 µs less that way (the two PL/pgSQL calls,
the JSON recordset). Items of a message whose effects are rolled back are dropped with it. Items
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
# The outbox insert (radsched_enqueue's, migration 0301), its VALUES rows to fill in: here as
# literals, in ``store.outbox.enqueue`` as parameters.
OUTBOX_INSERT = ("INSERT INTO outbox (kind, dedupe_key, payload, next_attempt_at, appointment_id) "
                 "VALUES {} ON CONFLICT (dedupe_key) DO NOTHING")


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

    Texts travel as dollar-quoted literals (nothing to escape); in the rare case one holds the
    quote tag (or ends with its first part), the caller gets ``""`` and must ``flush`` first and
    commit separately. If the writes fail the COMMIT in the same query string is not run: the
    transaction is left failed, for the caller to roll back.
    """
    parts = []
    if post is not None:
        text = _literal(_json(post))
        if text is None:
            return ""
        parts.append(f"SELECT radsched_finish({text}::jsonb, NULL)")
    if rows:
        values = []
        for row in rows:
            kind, key, payload = (_literal(row["kind"]), _literal(row["dedupe_key"]),
                                  _literal(_json(row["payload"])))
            due = "now()" if row.get("not_before") is None else _literal(row["not_before"])
            if None in (kind, key, payload, due):
                return ""
            if due != "now()":
                due += "::timestamptz"
            aid = row.get("appointment_id")
            values.append(f"({kind}, {key}, {payload}::jsonb, {due}, "
                          f"{'NULL' if aid is None else int(aid)})")
        parts.append(OUTBOX_INSERT.format(", ".join(values)))
    return "; ".join([*parts, "COMMIT"])


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _literal(text: str) -> str | None:
    """``text`` dollar-quoted; None when it holds the tag or its start (``$radsched_deferred``,
    which the closing tag would complete)."""
    return None if _TAG[:-1] in text else f"{_TAG}{text}{_TAG}"


async def flush(conn: asyncpg.Connection, rows: list[dict[str, Any]],
                post: dict[str, list[Any]] | None = None) -> None:
    """Send deferred writes now, in ``conn``'s transaction (one round trip)."""
    if rows or post is not None:
        await conn.fetchval(_FLUSH, post, rows or None)
