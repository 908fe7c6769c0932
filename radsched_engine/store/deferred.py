"""Writes a transaction's stages leave for its end (outbox rows, conflict findings), sent with COMMIT.

A stage adds items to its exchange (``add``); the unit of work gathers those of every message
it commits and sends them in the same simple-protocol query as the COMMIT (``commit_sql``), so
they cost no round trip of their own: ``[SELECT radsched_finish(<post>, NULL);] [EXECUTE
radsched_outbox_add(...) | SELECT radsched_enqueue(<rows>);] COMMIT`` (migration 0303 for the
post document, 0301 and 0402 for ``radsched_enqueue``; the rows go to the outbox's intake, from
which the outbox worker moves them: ``store.outbox``). A commit with one row runs
``radsched_outbox_add``, a statement every pooled connection of the store prepares once
(``prepare``): a plain INSERT in the query text was parsed, analysed and planned again for
every commit (~25 µs of PostgreSQL's CPU per text on the path of the ACK). A group commit's
rows go to ``radsched_enqueue`` as one JSON array, in order: one EXECUTE per row pays the
executor's start-up per row (~6-8 µs more per row with eight; measured on the embedded server,
one backend). Items of a message whose effects are
rolled back are dropped with it. Items live in ``exchange.data`` as tuples replaced on each
add, so a shallow copy of ``data`` is a safe snapshot.

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
# One row into the outbox's intake (migration 0402; radsched_enqueue takes several), prepared
# per connection.
PREPARED = "radsched_outbox_add"
_PREPARE = (f"PREPARE {PREPARED} (text, text, json, timestamptz, integer) AS "
            "INSERT INTO outbox_intake (kind, dedupe_key, payload, not_before, appointment_id) "
            "VALUES ($1, $2, $3, $4, $5)")
# Server process ids of the connections that hold it (a connection is its backend's for life;
# ``prepare`` runs for every new pooled connection, so a reused pid is prepared afresh).
_prepared: set[int] = set()
_HELD = "SELECT EXISTS (SELECT 1 FROM pg_prepared_statements WHERE name = $1)"


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


async def prepare(conn: asyncpg.Connection) -> None:
    """Prepare ``radsched_outbox_add`` on a new connection (outside any transaction); a database
    without the outbox table yet (not migrated) is left for ``ready`` to prepare on first use."""
    pid = conn.get_server_pid()
    _prepared.discard(pid)
    try:
        await conn.execute(_PREPARE)
    except asyncpg.UndefinedTableError:
        return
    _prepared.add(pid)


async def ready(conn: asyncpg.Connection) -> None:
    """Make sure ``conn`` holds ``radsched_outbox_add`` before a ``commit_sql`` with rows (round
    trips only on a connection opened before the database was migrated, or after ``forget``)."""
    pid = conn.get_server_pid()
    if pid not in _prepared:
        if not await conn.fetchval(_HELD, PREPARED):
            await conn.execute(_PREPARE)
        _prepared.add(pid)


def forget(conn: asyncpg.Connection) -> None:
    """``conn`` turned out not to hold the statement (its commit failed saying so): prepare again."""
    _prepared.discard(conn.get_server_pid())


def commit_sql(rows: list[dict[str, Any]], post: dict[str, list[Any]] | None = None) -> str:
    """``COMMIT``, preceded by the deferred writes when there are any: one round trip.

    The rows need ``radsched_outbox_add`` on the connection (``ready``). Texts travel as
    dollar-quoted literals (nothing to escape); in the rare case one holds the quote tag (or ends
    with its first part), the caller gets ``""`` and must ``flush`` first and commit separately.
    If the writes fail the COMMIT in the same query string is not run: the transaction is left
    failed, for the caller to roll back.
    """
    parts = []
    if post is not None:
        text = _literal(_json(post))
        if text is None:
            return ""
        parts.append(f"SELECT radsched_finish({text}::jsonb, NULL)")
    if len(rows) == 1:
        row = rows[0]
        kind, key, payload = (_literal(row["kind"]), _literal(row["dedupe_key"]),
                              _literal(_json(row["payload"])))
        due = "NULL" if row.get("not_before") is None else _literal(row["not_before"])
        if None in (kind, key, payload, due):
            return ""
        aid = row.get("appointment_id")
        parts.append(f"EXECUTE {PREPARED}({kind}, {key}, {payload}, {due}, "
                     f"{'NULL' if aid is None else int(aid)})")
    elif rows:                  # ids follow the array's order (a patient's texts stay in order)
        text = _literal(_json(rows))
        if text is None:
            return ""
        parts.append(f"SELECT radsched_enqueue({text}::jsonb)")
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
