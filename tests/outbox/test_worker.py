"""The generic outbox worker against real PostgreSQL: claim, record, back off, reconcile, order, fence."""

from __future__ import annotations

import asyncio
import json
import random

import asyncpg
import pytest
from prometheus_client import REGISTRY

from radsched_engine.outbox import Delivery, OutboxRow, OutboxWorker, WorkerOptions, backoff
from radsched_engine.store import Store

from .helpers import Clock, ScriptedHandler, add, row, rows

OPTIONS = WorkerOptions(poll_interval=0.05, lease=60.0, backoff_base=10.0, backoff_max=1000.0)


def worker(store: Store, *handlers: ScriptedHandler, clock: Clock | None = None,
           options: WorkerOptions = OPTIONS) -> OutboxWorker:
    return OutboxWorker(store, list(handlers), options, clock=clock or Clock(), rng=random.Random(7))


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_done_row_is_sent_with_its_result(store: Store, db_url: str) -> None:
    handler = ScriptedHandler()
    rid = await add(store, "test", "k1", {"x": 1}, appointment_id=None)
    before = sample("radsched_outbox_results_total", {"kind": "test", "result": "sent"})
    assert await worker(store, handler).drain() == 1
    got = await row(db_url, rid)
    assert (got["status"], got["attempts"], json.loads(got["result"]), got["last_error"]) == (
        "sent", 1, {"ok": rid}, None)
    assert got["locked_until"] is None
    seen = handler.delivered[0]
    assert isinstance(seen, OutboxRow)
    assert (seen.id, seen.kind, seen.dedupe_key, seen.payload, seen.attempts) == (
        rid, "test", "k1", {"x": 1}, 1)
    assert sample("radsched_outbox_results_total", {"kind": "test", "result": "sent"}) == before + 1
    assert handler.reconciled == []


async def test_an_async_record_handler_commits_without_leaving_the_setting_behind(
        db_url: str) -> None:
    """``async_record``: the result's own commit does not wait for the disk; the connection's
    next transactions (the claims) are synchronous again."""
    store = await Store.open(db_url, pool_min=1, pool_max=1, connect_timeout=5.0, command_timeout=10.0)
    try:
        handler = ScriptedHandler()
        handler.async_record = True
        rid = await add(store, "test", "k1", {"x": 1}, appointment_id=None)
        assert await worker(store, handler).drain() == 1
        assert (await row(db_url, rid))["status"] == "sent"
        async with store.connection() as conn:        # the pool's only connection
            assert await conn.fetchval("SHOW synchronous_commit") == "on"
    finally:
        await store.close()


async def test_rows_of_other_kinds_are_left_alone(store: Store, db_url: str) -> None:
    rid = await add(store, "someone_else", "k1")
    assert await worker(store, ScriptedHandler()).drain() == 0
    assert (await row(db_url, rid))["status"] == "pending"


async def test_retry_backs_off_then_succeeds(store: Store, db_url: str) -> None:
    clock = Clock()
    handler = ScriptedHandler()
    handler.script = [Delivery("retry", error="twilio unavailable")]
    rid = await add(store, "test", "k1")
    w = worker(store, handler, clock=clock)
    assert await w.drain() == 1
    got = await row(db_url, rid)
    assert (got["status"], got["attempts"], got["last_error"]) == ("retry", 1, "twilio unavailable")
    delay = (got["next_attempt_at"] - clock()).total_seconds()
    assert 4 < delay <= 10          # first backoff: base 10 s, half of it jittered
    assert await w.drain() == 0     # not due yet
    clock.advance(10)
    assert await w.drain() == 1
    got = await row(db_url, rid)
    assert (got["status"], got["attempts"], got["last_error"]) == ("sent", 2, None)
    assert handler.reconciled == []


async def test_retry_after_is_honoured(store: Store, db_url: str) -> None:
    clock = Clock()
    handler = ScriptedHandler()
    handler.script = [Delivery("retry", error="rate limited", retry_after=300)]
    rid = await add(store, "test", "k1")
    await worker(store, handler, clock=clock).drain()
    got = await row(db_url, rid)
    assert abs((got["next_attempt_at"] - clock()).total_seconds() - 300) < 5


async def test_dead_letter_after_max_attempts(store: Store, db_url: str) -> None:
    clock = Clock()
    handler = ScriptedHandler(max_attempts=3)
    handler.script = [Delivery("retry", error="twilio http 500")] * 5
    rid = await add(store, "test", "k1")
    w = worker(store, handler, clock=clock)
    for _ in range(5):
        await w.drain()
        clock.advance(2000)
    got = await row(db_url, rid)
    assert (got["status"], got["attempts"]) == ("dead", 3)
    assert got["last_error"] == "gave up after 3 attempts: twilio http 500"
    assert len(handler.delivered) == 3


async def test_handler_verdicts_dead_and_skipped(store: Store, db_url: str) -> None:
    handler = ScriptedHandler()
    handler.script = [Delivery("dead", {"code": 21211}, error="invalid number"),
                      Delivery("skipped", {"reason": "dry_run"}, label="skipped_dry_run")]
    a = await add(store, "test", "a")
    b = await add(store, "test", "b")
    before = sample("radsched_outbox_results_total", {"kind": "test", "result": "skipped_dry_run"})
    await worker(store, handler, options=WorkerOptions(batch=1)).drain()
    ra, rb = await row(db_url, a), await row(db_url, b)
    assert (ra["status"], ra["last_error"], json.loads(ra["result"])) == (
        "dead", "invalid number", {"code": 21211})
    assert (rb["status"], json.loads(rb["result"])) == ("skipped", {"reason": "dry_run"})
    label = {"kind": "test", "result": "skipped_dry_run"}
    assert sample("radsched_outbox_results_total", label) == before + 1


async def test_held_is_not_an_attempt(store: Store, db_url: str) -> None:
    clock = Clock()
    handler = ScriptedHandler(max_attempts=1)
    handler.script = [Delivery("held", retry_after=3600), Delivery("held", retry_after=3600)]
    rid = await add(store, "test", "k1")
    w = worker(store, handler, clock=clock)
    await w.drain()
    got = await row(db_url, rid)
    assert (got["status"], got["attempts"]) == ("pending", 0)
    assert await w.drain() == 0
    clock.advance(3600)
    await w.drain()
    clock.advance(3600)
    await w.drain()
    got = await row(db_url, rid)
    assert (got["status"], got["attempts"]) == ("sent", 1)


async def test_in_doubt_retry_is_reconciled_before_delivering_again(store: Store, db_url: str) -> None:
    clock = Clock()
    handler = ScriptedHandler()
    handler.script = [Delivery("retry", error="no answer within 10 s", in_doubt=True)]
    handler.reconcile_script = [Delivery("done", {"sid": "SM1", "reconciled": True})]
    rid = await add(store, "test", "k1")
    w = worker(store, handler, clock=clock)
    await w.drain()
    got = await row(db_url, rid)
    assert got["status"] == "sending" and got["locked_until"] == got["next_attempt_at"]
    assert json.loads(got["result"]) == {"in_doubt": True}
    clock.advance(20)
    await w.drain()
    got = await row(db_url, rid)
    assert (got["status"], json.loads(got["result"])) == ("sent", {"sid": "SM1", "reconciled": True})
    assert len(handler.delivered) == 1 and [r.id for r in handler.reconciled] == [rid]


async def test_reconcile_none_delivers_again(store: Store, db_url: str) -> None:
    clock = Clock()
    handler = ScriptedHandler()
    handler.script = [RuntimeError("bug")]        # an exception is in doubt too
    rid = await add(store, "test", "k1")
    w = worker(store, handler, clock=clock)
    await w.drain()
    got = await row(db_url, rid)
    assert (got["status"], got["last_error"]) == ("sending", "handler error: RuntimeError")
    clock.advance(20)
    await w.drain()
    assert (await row(db_url, rid))["status"] == "sent"
    assert len(handler.reconciled) == 1 and len(handler.delivered) == 2


async def test_expired_lease_is_reconciled_and_live_lease_is_not_taken(store: Store, db_url: str) -> None:
    clock = Clock()
    rid = await add(store, "test", "k1")
    first = ScriptedHandler()
    first.gate = asyncio.Event()                   # a delivery that never finishes (engine died)
    w1 = worker(store, first, clock=clock)
    task = asyncio.create_task(w1.run_once())
    while not first.delivered:
        await asyncio.sleep(0.01)
    second = ScriptedHandler()
    second.reconcile_script = [Delivery("done", {"found": True})]
    w2 = worker(store, second, clock=clock)
    assert await w2.drain() == 0                   # lease still held
    clock.advance(61)
    assert await w2.drain() == 1
    assert [r.id for r in second.reconciled] == [rid] and second.delivered == []
    # The first worker wakes up late: its lease is gone, its result is not written.
    first.gate.set()
    await task
    got = await row(db_url, rid)
    assert (got["status"], json.loads(got["result"])) == ("sent", {"found": True})


async def test_same_order_key_is_delivered_one_at_a_time_in_order(store: Store, db_url: str) -> None:
    clock = Clock()
    handler = ScriptedHandler(concurrency=8)
    handler.script = [Delivery("retry", error="down")]      # the first text fails once
    a1 = await add(store, "test", "a1", {"order_key": "patient-a"})
    b1 = await add(store, "test", "b1", {"order_key": "patient-b"})
    a2 = await add(store, "test", "a2", {"order_key": "patient-a"})
    a3 = await add(store, "test", "a3", {"order_key": "patient-a"})
    free = await add(store, "test", "free")
    w = worker(store, handler, clock=clock)
    assert await w.run_once() == 3                 # a1, b1, free; a2/a3 wait behind a1
    assert await w.drain() == 0                    # a1 is retrying: nothing for patient-a
    clock.advance(100)
    await w.drain()
    order = [r.id for r in handler.delivered]
    assert order.count(a1) == 2
    assert order.index(a2) > len(order) - 3 and order.index(a3) > order.index(a2)
    assert {r["id"]: r["status"] for r in await rows(db_url)} == dict.fromkeys([a1, b1, a2, a3, free], "sent")


async def test_dead_row_no_longer_blocks_its_order_key(store: Store, db_url: str) -> None:
    handler = ScriptedHandler()
    handler.script = [Delivery("dead", error="invalid number")]
    a1 = await add(store, "test", "a1", {"order_key": "k"})
    a2 = await add(store, "test", "a2", {"order_key": "k"})
    await worker(store, handler).drain()
    assert [r.id for r in handler.delivered] == [a1, a2]
    assert (await row(db_url, a2))["status"] == "sent"


async def test_concurrency_per_kind_is_bounded(store: Store, db_url: str) -> None:
    handler = ScriptedHandler(concurrency=2)
    for i in range(6):
        await add(store, "test", f"k{i}")
    w = worker(store, handler)
    await w.start()
    try:
        for _ in range(500):
            if len([r for r in await rows(db_url) if r["status"] == "sent"]) == 6:
                break
            await asyncio.sleep(0.02)
    finally:
        await w.stop()
    assert handler.peak <= 2 and len(handler.delivered) == 6 and handler.closed


async def test_two_workers_never_claim_the_same_row(store: Store, db_url: str) -> None:
    ids = [await add(store, "test", f"k{i}") for i in range(40)]
    h1, h2 = ScriptedHandler(concurrency=5), ScriptedHandler(concurrency=5)

    async def slow(row: OutboxRow) -> Delivery:
        await asyncio.sleep(0)
        return Delivery("done")

    h1.script = [slow] * 40
    h2.script = [slow] * 40
    other = await Store.open(db_url, pool_min=1, pool_max=2)
    try:
        await asyncio.gather(worker(store, h1).drain(), worker(other, h2).drain())
    finally:
        await other.close()
    seen = [r.id for r in h1.delivered + h2.delivered]
    assert sorted(seen) == ids


async def test_stop_cancels_late_deliveries_and_leaves_them_sending(store: Store, db_url: str) -> None:
    handler = ScriptedHandler()
    handler.gate = asyncio.Event()
    rid = await add(store, "test", "k1")
    w = worker(store, handler, options=WorkerOptions(poll_interval=0.02, stop_grace=0.05))
    await w.start()
    while not handler.delivered:
        await asyncio.sleep(0.01)
    await w.stop()
    got = await row(db_url, rid)
    assert got["status"] == "sending" and got["attempts"] == 1 and handler.closed


async def test_gauges_show_depth_and_oldest_age(store: Store, db_url: str) -> None:
    clock = Clock()
    await add(store, "gauge_kind", "k1")
    await add(store, "gauge_kind", "k2")
    clock.advance(120)
    w = worker(store, ScriptedHandler(), clock=clock)
    await w.refresh_gauges()
    assert sample("radsched_outbox_depth", {"kind": "gauge_kind"}) == 2
    assert sample("radsched_outbox_oldest_pending_seconds", {"kind": "gauge_kind"}) >= 119
    assert sample("radsched_outbox_depth", {"kind": "test"}) == 0


async def test_database_down_does_not_kill_the_loop(store: Store, db_url: str) -> None:
    handler = ScriptedHandler()
    w = worker(store, handler)
    admin = await asyncpg.connect(db_url)
    try:
        await admin.execute("ALTER TABLE outbox RENAME TO outbox_gone")
        await w.start()
        await asyncio.sleep(0.1)                   # a few failing polls
        await admin.execute("ALTER TABLE outbox_gone RENAME TO outbox")
        rid = await add(store, "test", "k1")
        for _ in range(500):
            if (await row(db_url, rid))["status"] == "sent":
                break
            await asyncio.sleep(0.02)
    finally:
        await w.stop()
        await admin.close()
    assert (await row(db_url, rid))["status"] == "sent"


def test_backoff_doubles_with_jitter_and_caps() -> None:
    rng = random.Random(1)
    for n in range(1, 12):
        d = backoff(n, 5.0, 600.0, rng)
        full = min(600.0, 5.0 * 2 ** (n - 1))
        assert full / 2 <= d <= full


def test_two_handlers_for_one_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="two outbox handlers"):
        OutboxWorker(None, [ScriptedHandler(), ScriptedHandler()])


async def test_rate_limits_deliveries_started_per_second(store: Store, db_url: str) -> None:
    clock = Clock()
    handler = ScriptedHandler(concurrency=10)
    handler.rate = 1 / 60                          # one a minute
    for i in range(3):
        await add(store, "test", f"k{i}")
    w = worker(store, handler, clock=clock)
    assert await w.run_once() == 1
    assert await w.run_once() == 0
    clock.advance(60)
    assert await w.run_once() == 1
    clock.advance(3600)                            # the bucket holds at most one second's worth (min 1)
    assert await w.drain() == 1
    assert await w.drain() == 0


async def test_a_rate_limited_backlog_is_claimed_in_waves(store: Store, db_url: str) -> None:
    clock = Clock()
    handler = ScriptedHandler(concurrency=4)
    handler.rate = 4.0                             # four a second: waves of four (the places)
    for i in range(16):
        await add(store, "test", f"w{i}")
    w = worker(store, handler, clock=clock)
    assert await w.run_once() == 4                 # a full bucket
    clock.advance(0.5)                             # two tokens back: a backlog waits for four
    assert await w.run_once() == 0
    assert w._next_look is not None and 0.4 < w._next_look <= 0.5
    clock.advance(0.5)
    assert await w.run_once() == 4
    hang = asyncio.Event()

    async def slow(row: OutboxRow) -> Delivery:
        await hang.wait()
        return Delivery("done", {})

    handler.script = [slow]                        # the next wave's first delivery hangs
    clock.advance(1.0)
    assert await w.poll() == 4
    await asyncio.sleep(0.1)                       # the other three are done
    clock.advance(1.0)
    assert await w.poll() == 3                     # the free places: the slow one holds none back
    hang.set()
    assert await w.run_once() == 0
    assert len(handler.delivered) == 15 and handler.peak <= 4


async def test_without_a_backlog_a_rate_limited_row_goes_at_once(store: Store, db_url: str) -> None:
    clock = Clock()
    handler = ScriptedHandler(concurrency=4)
    handler.rate = 4.0
    for i in range(3):
        await add(store, "test", f"s{i}")
    w = worker(store, handler, clock=clock)
    assert await w.run_once() == 3                 # fewer than asked for: no backlog
    clock.advance(0.25)                            # one token back
    await add(store, "test", "s3")
    assert await w.run_once() == 1


async def test_claims_take_the_oldest_due_rows_out_of_a_large_backlog(store: Store, db_url: str) -> None:
    # 2,000 waiting rows; rows 1,001-2,000 each wait behind an earlier row of their order key.
    async with store.connection() as conn:
        await conn.execute("""
            INSERT INTO outbox (kind, dedupe_key, payload)
            SELECT 'test', 'bulk' || i, jsonb_build_object('order_key', 'key' || (i % 1000))
            FROM generate_series(1, 2000) AS i""")
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM outbox ORDER BY id")]
    handler = ScriptedHandler(concurrency=20)
    w = worker(store, handler)
    claimed = await w.run_once()
    assert claimed > 0 and sorted(r.id for r in handler.delivered) == ids[:claimed]
    await w.drain(max_rounds=500)
    order = {r.id: n for n, r in enumerate(handler.delivered)}
    assert len(order) == 2000
    assert all(order[ids[i]] < order[ids[i + 1000]] for i in range(1000))


async def test_order_keys_are_one_namespace_for_every_kind(store: Store, db_url: str) -> None:
    clock = Clock()
    first, second = ScriptedHandler("kind_a"), ScriptedHandler("kind_b")
    first.script = [Delivery("retry", error="down")]
    a1 = await add(store, "kind_a", "a1", {"order_key": "shared"})
    b1 = await add(store, "kind_b", "b1", {"order_key": "shared"})
    w = worker(store, first, second, clock=clock)
    await w.drain()
    assert [r.id for r in first.delivered] == [a1] and second.delivered == []
    clock.advance(100)
    await w.drain()
    assert [r.id for r in second.delivered] == [b1]
    assert {r["id"]: r["status"] for r in await rows(db_url)} == {a1: "sent", b1: "sent"}
