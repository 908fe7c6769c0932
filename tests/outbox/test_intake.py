"""The outbox's intake (migration 0402): rows queued with a message, moved into the outbox by the
worker, oldest first, one kind at a time, a redelivered key dropped, nothing lost on rollback."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from prometheus_client import REGISTRY

from radsched_engine.outbox import OutboxWorker, WorkerOptions
from radsched_engine.store import Store
from radsched_engine.store.outbox import take

from .helpers import Clock, ScriptedHandler, rows


async def queue(url: str, *items: dict[str, Any]) -> None:
    """Rows into the intake as a unit of work's commit writes them (``radsched_enqueue``)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SELECT radsched_enqueue($1::jsonb)", json.dumps(list(items)))
    finally:
        await conn.close()


def item(kind: str, key: str, n: int, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "dedupe_key": key, "payload": {"n": n}, **extra}


async def intake(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return [r["dedupe_key"] for r in await conn.fetch("SELECT dedupe_key FROM outbox_intake ORDER BY id")]
    finally:
        await conn.close()


async def bulk(conn: asyncpg.Connection, n: int, prefix: str = "bulk", other_every: int = 0) -> None:
    """``n`` rows straight into the intake, keys ``<prefix>1..n``; every ``other_every``-th row
    of kind ``other``, the rest ``test``."""
    kind = f"CASE WHEN g % {other_every} = 0 THEN 'other' ELSE 'test' END" if other_every else "'test'"
    await conn.execute(f"INSERT INTO outbox_intake (kind, dedupe_key, payload) "
                       f"SELECT {kind}, '{prefix}' || g, '{{}}' FROM generate_series(1, {n}) AS g")


async def test_take_moves_the_oldest_rows_of_one_kind_in_order_and_drops_a_second_key(
        db_url: str) -> None:
    later = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    await queue(db_url, item("test", "a1", 1, appointment_id=7), item("test", "a2", 2),
                item("other", "b1", 3), item("test", "a3", 4, not_before=later.isoformat()))
    await queue(db_url, item("test", "a1", 5))                     # redelivered: same key
    conn = await asyncpg.connect(db_url)
    try:
        queued_at = await conn.fetchval("SELECT min(created_at) FROM outbox_intake")
        assert await take(conn, "test", 2) == 2
        moved = await rows(db_url)
        assert [(r["dedupe_key"], json.loads(r["payload"]), r["status"], r["appointment_id"])
                for r in moved] == [("a1", {"n": 1}, "pending", 7), ("a2", {"n": 2}, "pending", None)]
        assert all(r["created_at"] == r["next_attempt_at"] == queued_at for r in moved)
        assert await intake(db_url) == ["b1", "a3", "a1"]
        assert await take(conn, "test", 10) == 2                   # a3, and the second a1 dropped
        assert await take(conn, "test", 10) == 0
    finally:
        await conn.close()
    moved = await rows(db_url)
    assert [(r["dedupe_key"], json.loads(r["payload"])["n"]) for r in moved] == [
        ("a1", 1), ("a2", 2), ("a3", 4)]
    assert moved[2]["next_attempt_at"] == later
    assert await intake(db_url) == ["b1"]


async def test_one_mover_per_kind_and_a_rolled_back_move_loses_nothing(db_url: str) -> None:
    await queue(db_url, item("test", "a1", 1), item("test", "a2", 2), item("other", "b1", 3))
    first, second = await asyncpg.connect(db_url), await asyncpg.connect(db_url)
    try:
        moving = first.transaction()
        await moving.start()
        assert await take(first, "test", 10) == 2
        assert await take(second, "test", 10) == 0     # the kind is being moved: nothing, no wait
        assert await take(second, "other", 10) == 1   # another kind is not held up
        await moving.rollback()                          # e.g. the worker died mid-move
        assert await intake(db_url) == ["a1", "a2"]
        assert [r["dedupe_key"] for r in await rows(db_url)] == ["b1"]
        assert await take(second, "test", 10) == 2
    finally:
        await first.close()
        await second.close()
    assert [r["dedupe_key"] for r in await rows(db_url)] == ["b1", "a1", "a2"]


async def test_the_worker_takes_only_what_it_needs_and_delivers_in_queue_order(
        store: Store, db_url: str) -> None:
    await queue(db_url, *(item("test", f"k{n}", n) for n in range(10)))
    handler = ScriptedHandler(concurrency=2)
    options = WorkerOptions(poll_interval=0.05, lease=60.0, batch=3)
    worker = OutboxWorker(store, [handler], options, clock=Clock(), rng=random.Random(7))
    assert await worker.run_once() == 2
    assert len(await intake(db_url)) == 7                # one take of `batch` rows, not all ten
    assert [r["status"] for r in await rows(db_url)] == ["sent", "sent", "pending"]
    assert await worker.drain() == 8
    assert [r.dedupe_key for r in handler.delivered] == [f"k{n}" for n in range(10)]
    assert await intake(db_url) == []


async def test_gauges_count_rows_still_in_the_intake(store: Store, db_url: str) -> None:
    await queue(db_url, item("intake_kind", "k1", 1), item("intake_kind", "k2", 2))
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("UPDATE outbox_intake SET created_at = $1 WHERE dedupe_key = 'k1'",
                           datetime.now(UTC) - timedelta(seconds=300))
        assert await take(conn, "intake_kind", 1) == 1  # one in the outbox, one still in the intake
    finally:
        await conn.close()
    worker = OutboxWorker(store, [ScriptedHandler()], WorkerOptions(), clock=Clock())
    await worker.refresh_gauges()
    assert REGISTRY.get_sample_value("radsched_outbox_depth", {"kind": "intake_kind"}) == 2
    assert REGISTRY.get_sample_value("radsched_outbox_oldest_pending_seconds",
                                     {"kind": "intake_kind"}) >= 299


async def test_the_workers_move_does_not_wait_for_the_disk_and_leaves_no_setting_behind(
        db_url: str) -> None:
    await queue(db_url, item("test", "a1", 1))
    conn = await asyncpg.connect(db_url)
    try:
        assert await take(conn, "test", 10, wait_for_disk=False) == 1
        assert await conn.fetchval("SHOW synchronous_commit") == "on"
    finally:
        await conn.close()
    assert [r["dedupe_key"] for r in await rows(db_url)] == ["a1"]


async def test_a_move_reads_only_the_rows_it_takes_whatever_the_backlog(db_url: str) -> None:
    """The move finds its rows through the (kind, id) index and deletes them by tuple id: no
    scan of the intake (a join on id was planned for a generic LIMIT and read every waiting row)."""
    conn = await asyncpg.connect(db_url)
    try:
        await bulk(conn, 5000, other_every=10)
        await conn.execute("ANALYZE outbox_intake")
        async with conn.transaction():
            assert await take(conn, "test", 50) == 50
            scans = await conn.fetchrow(
                "SELECT seq_scan, idx_tup_fetch, n_tup_del FROM pg_stat_xact_user_tables "
                "WHERE relname = 'outbox_intake'")
        assert scans["seq_scan"] == 0 and scans["n_tup_del"] == 50
        assert scans["idx_tup_fetch"] <= 100
        moved = await conn.fetch("SELECT dedupe_key FROM outbox ORDER BY id")
        assert [r["dedupe_key"] for r in moved] == [f"bulk{g}" for g in range(1, 56) if g % 10][:50]
    finally:
        await conn.close()


async def test_the_intake_depth_is_exact_up_to_its_cap_and_estimated_from_ids_beyond(
        db_url: str) -> None:
    """radsched_intake_depth (migration 0403): two kinds interleaved, ids lost to a rollback."""
    conn = await asyncpg.connect(db_url)
    try:
        await bulk(conn, 4000, other_every=4)
        tx = conn.transaction()
        await tx.start()
        await bulk(conn, 400, "lost")
        await tx.rollback()
        await bulk(conn, 4000, "late", other_every=4)
        await conn.execute("UPDATE outbox_intake SET created_at = created_at - interval '1 hour' "
                           "WHERE dedupe_key = 'bulk1'")
        exact = {r["kind"]: r["n"] for r in await conn.fetch(
            "SELECT kind, count(*) AS n FROM outbox_intake GROUP BY kind")}
        assert exact == {"test": 6000, "other": 2000}
        depth = {r["kind"]: r for r in await conn.fetch("SELECT * FROM radsched_intake_depth(10000)")}
        assert {k: r["depth"] for k, r in depth.items()} == exact
        oldest = await conn.fetchval("SELECT created_at FROM outbox_intake WHERE dedupe_key = 'bulk1'")
        assert depth["test"]["oldest"] == oldest
        estimated = {r["kind"]: r["depth"] for r in await conn.fetch(
            "SELECT * FROM radsched_intake_depth(1000)")}
        assert estimated.keys() == exact.keys()
        for kind, n in exact.items():                  # the lost ids overcount a little
            assert n <= estimated[kind] <= n * 1.1, (kind, estimated[kind])
    finally:
        await conn.close()


async def test_the_gauges_read_a_bounded_part_of_a_large_intake(store: Store, db_url: str) -> None:
    """A refresh counts at most INTAKE_EXACT rows of a kind by index, whatever the backlog (a full
    count took 55 ms at 150,000 rows, on the database the ACK's transactions need)."""
    from radsched_engine.outbox import _GAUGES, INTAKE_EXACT

    conn = await asyncpg.connect(db_url)
    try:
        await bulk(conn, INTAKE_EXACT * 3)
        await conn.execute("VACUUM ANALYZE outbox_intake")
        read = ("SELECT pg_stat_clear_snapshot(), (SELECT sum(idx_tup_read) FROM pg_stat_user_indexes "
                "WHERE relname = 'outbox_intake') AS idx, (SELECT seq_scan FROM pg_stat_user_tables "
                "WHERE relname = 'outbox_intake') AS seq")
        before = await conn.fetchrow(read)
        depth = {r["kind"]: r["depth"] for r in await conn.fetch(_GAUGES)}
        await conn.execute("SELECT pg_stat_force_next_flush()")
        after = await conn.fetchrow(read)
        assert depth == {"test": INTAKE_EXACT * 3}
        assert after["seq"] == before["seq"]
        assert 0 < after["idx"] - before["idx"] <= INTAKE_EXACT + 10
    finally:
        await conn.close()


async def test_autovacuum_leaves_the_intakes_growth_alone_and_analyze_skips_payloads(
        db_url: str) -> None:
    """Migration 0404: no statistics are gathered for the intake by autovacuum (its queries have
    fixed plans), no vacuum for inserts alone; an explicit ANALYZE reads no payload."""
    conn = await asyncpg.connect(db_url)
    try:
        options = await conn.fetchval(
            "SELECT reloptions FROM pg_class WHERE oid = 'outbox_intake'::regclass")
        assert set(options) == {"autovacuum_analyze_scale_factor=100",
                                "autovacuum_vacuum_insert_threshold=-1"}
        await bulk(conn, 200)
        await conn.execute("ANALYZE outbox_intake")
        columns = {r["attname"] for r in await conn.fetch(
            "SELECT attname FROM pg_stats WHERE tablename = 'outbox_intake'")}
        assert "kind" in columns and "payload" not in columns
    finally:
        await conn.close()
