"""Writes a transaction's stages leave for its end (outbox rows, conflict findings), sent with COMMIT.

A stage adds items to its exchange (``add``); the unit of work gathers those of every message
it commits and sends them in the same simple-protocol query as the COMMIT (``commit_sql``), so
they cost no round trip of their own: ``[SELECT radsched_finish(<post>, NULL);] [EXECUTE
radsched_outbox_add(...) | EXECUTE radsched_outbox_rows(<rows>);] COMMIT`` (migration 0303 for
the post document). The outbox rows go through two statements every pooled connection prepares
once (``prepare``, from the pool's connection set-up): ``radsched_outbox_add`` for a commit with
one row, ``radsched_outbox_rows`` (a JSON array of rows, in order) for a group commit's several.
A plain INSERT in the query text was parsed, analysed and planned again for every commit
(~25 µs of PostgreSQL's CPU per text on the path of the ACK); one EXECUTE per row of a group
pays the executor's start-up per row (~6-8 µs more per row with eight than one statement for
all; measured on the embedded server, one backend). Items of a message whose effects are
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
# The outbox insert (radsched_enqueue's, migration 0301), its VALUES row to fill in: prepared
# per connection here, in ``store.outbox.enqueue`` as asyncpg's own prepared statement.
OUTBOX_INSERT = ("INSERT INTO outbox (kind, dedupe_key, payload, next_attempt_at, appointment_id) "
                 "VALUES {} ON CONFLICT (dedupe_key) DO NOTHING")
PREPARED = "radsched_outbox_add"
PREPARED_ROWS = "radsched_outbox_rows"
_PREPARE = {
    PREPARED: f"PREPARE {PREPARED} (text, text, jsonb, timestamptz, integer) AS "
              + OUTBOX_INSERT.format("($1, $2, $3, coalesce($4, now()), $5)"),
    PREPARED_ROWS: f"PREPARE {PREPARED_ROWS} (jsonb) AS " + OUTBOX_INSERT.replace(
        "VALUES {}", "SELECT r.kind, r.dedupe_key, r.payload, coalesce(r.not_before, now()), "
                     "r.appointment_id FROM jsonb_to_recordset($1) AS r(kind text, dedupe_key "
                     "text, payload jsonb, not_before timestamptz, appointment_id integer)"),
}
# Server process ids of the connections that hold both (a connection is its backend's for
# life; ``prepare`` runs for every new pooled connection, so a reused pid is prepared afresh).
_prepared: set[int] = set()
_HELD = "SELECT array_agg(name) FROM pg_prepared_statements WHERE name = ANY($1::text[])"


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
    """Prepare the outbox inserts on a new connection (outside any transaction); a database
    without the outbox table yet (not migrated) is left for ``ready`` to prepare on first use."""
    pid = conn.get_server_pid()
    _prepared.discard(pid)
    try:
        await conn.execute("; ".join(_PREPARE.values()))
    except asyncpg.UndefinedTableError:
        return
    _prepared.add(pid)


async def ready(conn: asyncpg.Connection) -> None:
    """Make sure ``conn`` holds the outbox inserts before a ``commit_sql`` with rows (round trips
    only on a connection opened before the database was migrated, or after ``forget``)."""
    pid = conn.get_server_pid()
    if pid not in _prepared:
        held = await conn.fetchval(_HELD, list(_PREPARE)) or []
        missing = [sql for name, sql in _PREPARE.items() if name not in held]
        if missing:
            await conn.execute("; ".join(missing))
        _prepared.add(pid)


def forget(conn: asyncpg.Connection) -> None:
    """``conn`` turned out not to hold a statement (its commit failed saying so): prepare again."""
    _prepared.discard(conn.get_server_pid())


def commit_sql(rows: list[dict[str, Any]], post: dict[str, list[Any]] | None = None) -> str:
    """``COMMIT``, preceded by the deferred writes when there are any: one round trip.

    The rows need the prepared inserts on the connection (``ready``). Texts travel as
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
        text = _literal(_json([{"kind": r["kind"], "dedupe_key": r["dedupe_key"],
                                "payload": r["payload"], "not_before": r.get("not_before"),
                                "appointment_id": r.get("appointment_id")} for r in rows]))
        if text is None:
            return ""
        parts.append(f"EXECUTE {PREPARED_ROWS}({text})")
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
