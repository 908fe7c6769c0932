"""The pruner's passes against a real PostgreSQL: what goes, what stays, dry runs, batches, marks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prometheus_client import REGISTRY

from radsched_engine.config import RetentionSettings
from radsched_engine.store.retention import prune

from .helpers import NOW, add_journal, add_outbox, digest, journal_state, outbox_ids, raw_message

SETTINGS = RetentionSettings(raw_days=30, journal_days=90, outbox_days=30, batch_size=100)


def counted(table: str, action: str) -> float:
    value = REGISTRY.get_sample_value("radsched_retention_rows_total",
                                      {"table": table, "action": action})
    return value or 0.0


async def test_old_rows_deleted_middle_aged_rows_lose_their_bytes_young_rows_stay(store: Any) -> None:
    old = await add_journal(store, [200, 120, 91])
    middle = await add_journal(store, [89, 45, 31], start=10)
    young = await add_journal(store, [29, 1, 0], start=20)
    before = (counted("hl7_messages", "deleted"), counted("hl7_messages", "raw_cleared"))

    report = await prune(store, SETTINGS, now=NOW)

    assert report.count("hl7_messages", "deleted") == 3
    assert report.count("hl7_messages", "raw_cleared") == 3
    assert report.complete and not report.dry_run
    state = await journal_state(store)
    assert not set(old) & set(state)
    assert [state[i] for i in middle] == [0, 0, 0]
    assert [state[i] for i in young] == [len(raw_message(20 + k)) for k in range(3)]
    assert (counted("hl7_messages", "deleted"), counted("hl7_messages", "raw_cleared")) == (
        before[0] + 3, before[1] + 3)
    async with store.connection() as conn:      # the metadata of a cleared row is all there
        row = await conn.fetchrow("SELECT * FROM hl7_messages WHERE id = $1", middle[0])
    assert (row["control_id"], row["outcome"], row["ack_code"]) == ("RET-000010", "accepted", "AA")
    assert row["content_hash"] == digest(raw_message(10))


async def test_a_second_run_finds_nothing_more(store: Any) -> None:
    await add_journal(store, [100, 50, 10])
    await prune(store, SETTINGS, now=NOW)
    again = await prune(store, SETTINGS, now=NOW)
    assert again.counts == {("hl7_messages", "deleted"): 0, ("hl7_messages", "raw_cleared"): 0,
                            ("outbox", "deleted"): 0}


async def test_only_finished_old_outbox_rows_are_deleted(store: Any) -> None:
    finished_old = await add_outbox(store, [("sent", 60, 40), ("skipped", 60, 40),
                                            ("dead", 50, 31), ("cancelled", 45, 45)])
    unfinished_old = await add_outbox(store, [("pending", 60, 60), ("retry", 60, 60),
                                              ("sending", 60, 60)], start=10)
    finished_late = await add_outbox(store, [("dead", 60, 2), ("sent", 10, 10)], start=20)

    report = await prune(store, SETTINGS, now=NOW)

    assert report.count("outbox", "deleted") == 4
    assert await outbox_ids(store) == unfinished_old + finished_late
    assert not set(finished_old) & set(await outbox_ids(store))


async def test_outbox_rows_after_one_in_flight_are_pruned_and_it_is_when_it_finishes(store: Any) -> None:
    [waiting] = await add_outbox(store, [("retry", 60, 60)])
    after = await add_outbox(store, [("sent", 59, 59)] * 5, start=1)
    await prune(store, SETTINGS, now=NOW)
    assert await outbox_ids(store) == [waiting]
    async with store.connection() as conn:
        assert await conn.fetchval("SELECT next_id FROM retention_marks WHERE pass = 'outbox'") == waiting
        await conn.execute("UPDATE outbox SET status = 'dead', updated_at = $2 WHERE id = $1",
                           waiting, NOW.replace(year=NOW.year - 1))
    report = await prune(store, SETTINGS, now=NOW)
    assert report.count("outbox", "deleted") == 1
    assert await outbox_ids(store) == []
    assert after


async def test_dry_run_changes_nothing_and_counts_what_a_run_then_does(store: Any) -> None:
    await add_journal(store, [300, 150, 95, 60, 40, 20, 5])
    await add_outbox(store, [("sent", 40, 40), ("pending", 40, 40), ("sent", 5, 5)])
    journal_before, outbox_before = await journal_state(store), await outbox_ids(store)
    before = counted("hl7_messages", "deleted")

    dry = await prune(store, SETTINGS, now=NOW, dry_run=True)

    assert dry.dry_run
    assert await journal_state(store) == journal_before
    assert await outbox_ids(store) == outbox_before
    assert counted("hl7_messages", "deleted") == before
    async with store.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM retention_marks") == 0
    real = await prune(store, SETTINGS, now=NOW)
    assert dry.counts == real.counts == {("hl7_messages", "deleted"): 3,
                                         ("hl7_messages", "raw_cleared"): 2,
                                         ("outbox", "deleted"): 1}


async def test_many_batches(store: Any) -> None:
    """2,500 rows in batches of 100: every one handled, the marks at the young rows."""
    ages = [200.0] * 1200 + [60.0] * 1300 + [1.0] * 7
    ids = await add_journal(store, ages)
    await add_outbox(store, [("sent", 40, 40)] * 250 + [("sent", 1, 1)] * 3)
    connections = CountingStore(store)

    report = await prune(connections, SETTINGS, now=NOW)

    assert report.counts == {("hl7_messages", "deleted"): 1200, ("hl7_messages", "raw_cleared"): 1300,
                             ("outbox", "deleted"): 250}
    assert connections.opened >= (1200 + 1300 + 250) // 100   # short transactions, not one long one
    state = await journal_state(store)
    assert sorted(state) == ids[1200:]
    assert sum(1 for n in state.values() if n == 0) == 1300
    assert len(await outbox_ids(store)) == 3
    async with store.connection() as conn:
        marks = dict(await conn.fetch("SELECT pass, next_id FROM retention_marks"))
    assert marks["journal_raw"] == ids[2499] + 1        # after the last row old enough
    assert marks["journal"] == ids[1199] + 1


async def test_a_run_starts_at_its_mark(store: Any) -> None:
    """Rows whose bytes are gone are not read again: the raw pass begins at its mark."""
    ids = await add_journal(store, [60.0] * 50)
    await prune(store, SETTINGS, now=NOW)
    async with store.connection() as conn:
        # A row below the mark that (by some restore) has bytes again is not looked at: proof
        # that the next run starts at the mark rather than at the table's first row.
        await conn.execute("UPDATE hl7_messages SET raw = 'x'::bytea WHERE id = $1", ids[0])
    later = await add_journal(store, [45.0] * 3, start=100)
    report = await prune(store, SETTINGS, now=NOW)
    assert report.count("hl7_messages", "raw_cleared") == 3
    state = await journal_state(store)
    assert state[ids[0]] == 1 and [state[i] for i in later] == [0, 0, 0]


async def test_only_the_configured_passes_run(store: Any) -> None:
    await add_journal(store, [400, 40])
    await add_outbox(store, [("sent", 400, 400)])
    report = await prune(store, RetentionSettings(raw_days=30), now=NOW)
    assert report.counts == {("hl7_messages", "raw_cleared"): 2}
    assert len(await journal_state(store)) == 2 and len(await outbox_ids(store)) == 1
    nothing = await prune(store, RetentionSettings(), now=NOW)
    assert nothing.counts == {} and nothing.lines()[0].startswith("nothing to prune")


async def test_report_lines(store: Any) -> None:
    await add_journal(store, [100, 40])
    lines = (await prune(store, SETTINGS, now=NOW, dry_run=True)).lines()
    assert lines == ["table          action       would be",
                     "hl7_messages   deleted      1",
                     "hl7_messages   raw_cleared  1",
                     "outbox         deleted      0"]


class CountingStore:
    """The store, counting the connections taken (one per batch transaction)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.opened = 0

    def connection(self) -> Any:
        self.opened += 1
        return self.store.connection()


async def test_an_appointment_keeps_its_version_stamp_when_its_journal_row_goes(store: Any) -> None:
    """No foreign key ties appointments to the journal: the booking stays, its
    ``last_message_id`` (a version stamp) keeps naming the pruned row."""
    [old] = await add_journal(store, [200])
    async with store.connection() as conn:
        appointment = await conn.fetchval(
            """INSERT INTO appointments (appointment_key, channel, datetime, end_at, last_message_id)
               VALUES ('ret|F:1', 'ret', $1::timestamptz, $1::timestamptz + interval '30 minutes',
                       $2) RETURNING id""",
            NOW, old)
    await prune(store, SETTINGS, now=NOW)
    assert old not in await journal_state(store)
    async with store.connection() as conn:
        assert await conn.fetchval("SELECT last_message_id FROM appointments WHERE id = $1",
                                   appointment) == old


async def claim(store: Any, control_id: str, content: bytes) -> str:
    async with store.connection() as conn, conn.transaction():
        return await conn.fetchval(
            "SELECT state FROM radsched_claim_message(7, 'ret', 'RIS', 'HOSP', $1, $2)",
            control_id, digest(content))


async def test_a_redelivery_is_recognised_until_its_journal_row_is_pruned(store: Any) -> None:
    await add_journal(store, [80])
    assert await claim(store, "RET-000000", raw_message(0)) == "duplicate"
    report = await prune(store, SETTINGS, now=NOW)            # bytes gone, hash kept
    assert report.count("hl7_messages", "raw_cleared") == 1
    assert await claim(store, "RET-000000", raw_message(0)) == "duplicate"
    assert await claim(store, "RET-000000", raw_message(1)) == "reused"
    await prune(store, RetentionSettings(journal_days=60), now=NOW)
    assert await claim(store, "RET-000000", raw_message(0)) == "new"   # a new message now


async def test_a_row_committed_late_below_the_young_row_is_not_skipped(store: Any) -> None:
    """After an idle spell, a transaction still in flight may hold an id between the last old row
    and the first young one: the mark stays just after the old rows, so the next run finds it."""
    async def row(id_: int, age_days: float) -> None:
        async with store.connection() as conn:
            await conn.execute(
                """INSERT INTO hl7_messages (id, channel, received_at, raw, content_hash, outcome)
                   VALUES ($1, 'ret', $2, 'MSH|x'::bytea, sha256('MSH|x'::bytea), 'accepted')""",
                id_, NOW - timedelta(days=age_days))

    for id_ in (1, 2, 3):
        await row(id_, 45)
    await row(10, 0)                                   # committed first
    await prune(store, SETTINGS, now=NOW)
    await row(5, 0)                                    # id taken earlier, committed now
    later = NOW + timedelta(days=31)
    report = await prune(store, SETTINGS, now=later)
    assert report.count("hl7_messages", "raw_cleared") == 2
    assert await journal_state(store) == {1: 0, 2: 0, 3: 0, 5: 0, 10: 0}
