"""Group commit on real PostgreSQL: waiting exchanges share one transaction; a failing member poisons none."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from radsched_engine.errors import Problem
from radsched_engine.exchange import Exchange, Outcome
from radsched_engine.pipeline import Pipeline, StageSpec
from radsched_engine.store import Store, deferred, migrate
from radsched_engine.store.group import GroupUnitOfWork
from radsched_engine.store.outbox import defer
from tests.conftest import with_database
from tests.store.helpers import exchange, fetch, journal_rows, outbox_rows, siu

Body = Callable[[Exchange], Awaitable[None]]


async def _probe_table(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE probe (n text PRIMARY KEY, tx bigint NOT NULL, "
                           "ref text REFERENCES probe (n) DEFERRABLE INITIALLY DEFERRED)")
    finally:
        await conn.close()


def writer(*, outcome: Callable[[Exchange], Outcome | None] = lambda ex: None,
           before: Callable[[Exchange], Awaitable[None]] | None = None, ref: str | None = None) -> Body:
    """A body that records its message in ``probe`` (with its transaction id), queues an outbox
    row, then sets ``outcome(ex)``; ``ref`` makes the row break a deferred FK at commit."""
    async def body(ex: Exchange) -> None:
        if before is not None:
            await before(ex)
        name = ex.raw.decode().split("|")[9]
        tx = await ex.tx.fetchval("INSERT INTO probe VALUES ($1, txid_current(), $2) RETURNING tx",
                                  name, ref if name.endswith("-bad") else None)
        ex.data["tx"] = tx
        ex.data["runs"] = ex.data.get("runs", 0) + 1
        defer(ex, "sms", f"k-{name}", {"n": name})
        decided = outcome(ex)
        if decided is not None:
            ex.outcome = decided
            ex.problem = Problem(206 if decided is Outcome.RETRY else 205, f"{decided.value} by test")
    return body


async def run_all(uow: GroupUnitOfWork, items: list[tuple[Exchange, Body]],
                  gate: asyncio.Event) -> list[BaseException | None]:
    """Start every exchange while the first one holds the (only) writer, then let them go."""
    async def hold(ex: Exchange) -> None:
        await gate.wait()

    async def one(ex: Exchange, body: Body) -> BaseException | None:
        try:
            await uow.run(ex, body)
        except Exception as exc:
            return exc
        return None

    first = asyncio.create_task(uow.run(exchange(siu("S12", "HOLD")), writer(before=hold)))
    await asyncio.sleep(0.05)
    tasks = [asyncio.create_task(one(ex, body)) for ex, body in items]
    await asyncio.sleep(0.05)
    assert len(uow._queue) == len(items)            # all waiting behind the first
    gate.set()
    await first
    return list(await asyncio.gather(*tasks))


@pytest.fixture
async def uow(store: Store, db_url: str) -> GroupUnitOfWork:
    await _probe_table(db_url)
    return GroupUnitOfWork(store, "scheduling", writers=1)


async def test_waiting_exchanges_commit_in_one_transaction(uow: GroupUnitOfWork, db_url: str) -> None:
    items = [(exchange(siu("S12", f"M{i}")), writer()) for i in range(8)]
    errors = await run_all(uow, items, asyncio.Event())
    assert errors == [None] * 8
    txs = {ex.data["tx"] for ex, _ in items}
    assert len(txs) == 1                              # one transaction for the eight
    rows = await journal_rows(db_url)
    assert [r["control_id"] for r in rows] == ["HOLD"] + [f"M{i}" for i in range(8)]
    assert all(r["outcome"] == "accepted" for r in rows)
    assert all(ex.journal_id == r["id"] for (ex, _), r in zip(items, rows[1:], strict=True))
    keys = [r["dedupe_key"] for r in await outbox_rows(db_url, "SELECT dedupe_key FROM outbox ORDER BY id")]
    assert keys == ["k-HOLD"] + [f"k-M{i}" for i in range(8)]


async def test_a_rejected_member_commits_its_journal_row_and_poisons_no_other(
        uow: GroupUnitOfWork, db_url: str) -> None:
    seen: list[str] = []

    def rejects(ex: Exchange) -> Outcome | None:
        name = ex.raw.decode().split("|")[9]
        seen.append(name)
        return Outcome.REJECTED if name in ("FIRST", "M2") else None

    items = [(exchange(siu("S12", name)), writer(outcome=rejects))
             for name in ("FIRST", "M0", "M1", "M2", "M3", "M4")]
    assert await run_all(uow, items, asyncio.Event()) == [None] * 6
    probe = {r["n"] for r in await fetch(db_url, "SELECT n FROM probe")}
    assert probe == {"HOLD", "M0", "M1", "M3", "M4"}               # rejected effects undone
    outbox = {r["dedupe_key"] for r in await outbox_rows(db_url, "SELECT dedupe_key FROM outbox")}
    assert outbox == {"k-HOLD", "k-M0", "k-M1", "k-M3", "k-M4"}
    journal = {r["control_id"]: r for r in await journal_rows(db_url)}
    assert journal["M2"]["outcome"] == "rejected" and journal["M2"]["error_code"] == 205
    assert journal["FIRST"]["outcome"] == "rejected" and items[0][0].journal_id is not None
    assert all(journal[f"M{i}"]["outcome"] == "accepted" for i in (0, 1, 3, 4))
    assert all(items[i][0].journal_id == journal[items[i][0].raw.decode().split("|")[9]]["id"]
               for i in range(6))
    # FIRST fails the first batch at once (alone: rejected again); M0-M2 go first in the next
    # batch, M2 fails it, M0 and M1 run again as a batch, M2 alone, then M3 and M4.
    assert seen == ["FIRST", "FIRST", "M0", "M1", "M2", "M0", "M1", "M2", "M3", "M4"]
    assert items[1][0].data["tx"] == items[2][0].data["tx"] != items[4][0].data["tx"]


async def test_a_member_that_must_retry_runs_again_alone_and_the_others_commit(
        uow: GroupUnitOfWork, db_url: str) -> None:
    # The first attempt (inside the batch) ends in AR 206, like a lock wait cut short; the
    # second, alone, succeeds. The first attempt's row and outbox row were rolled back.
    attempts: list[str] = []

    def first_attempt_retries(ex: Exchange) -> Outcome | None:
        attempts.append(ex.raw.decode().split("|")[9])
        return Outcome.RETRY if len(attempts) == 1 else None

    flaky = writer(outcome=first_attempt_retries)
    items = [(exchange(siu("S12", f"M{i}")), flaky if i == 1 else writer()) for i in range(4)]
    assert await run_all(uow, items, asyncio.Event()) == [None] * 4
    ex1 = items[1][0]
    assert attempts == ["M1", "M1"]
    assert ex1.outcome is None and ex1.data["runs"] == 1            # state restored before the rerun
    journal = {r["control_id"]: r for r in await journal_rows(db_url)}
    assert set(journal) == {"HOLD", "M0", "M1", "M2", "M3"}
    assert all(r["outcome"] == "accepted" for r in journal.values())
    assert journal["M0"]["id"] < journal["M1"]["id"] < journal["M2"]["id"]
    assert items[2][0].data["tx"] == items[3][0].data["tx"] != ex1.data["tx"]
    assert len(await outbox_rows(db_url, "SELECT 1 FROM outbox WHERE dedupe_key = 'k-M1'")) == 1
    assert len(await fetch(db_url, "SELECT 1 FROM probe WHERE n = 'M1'")) == 1


async def test_a_failed_commit_is_run_again_member_by_member_and_only_the_culprit_fails(
        uow: GroupUnitOfWork, db_url: str) -> None:
    items = [(exchange(siu("S12", f"M{i}-bad" if i == 3 else f"M{i}")), writer(ref="nowhere"))
             for i in range(6)]
    errors = await run_all(uow, items, asyncio.Event())
    assert [type(e).__name__ if e else None for e in errors] == [
        None, None, None, "ForeignKeyViolationError", None, None]
    assert items[3][0].journal_id is None
    journal = [r["control_id"] for r in await journal_rows(db_url)]
    assert journal == ["HOLD", "M0", "M1", "M2", "M4", "M5"]
    assert len({ex.data["tx"] for ex, _ in items}) == 6          # each alone after the failure
    assert [r["n"] for r in await fetch(db_url, "SELECT n FROM probe ORDER BY n")] == [
        "HOLD", "M0", "M1", "M2", "M4", "M5"]
    assert len(await outbox_rows(db_url, "SELECT 1 FROM outbox")) == 6


async def test_the_database_going_away_mid_batch_fails_every_member(
        uow: GroupUnitOfWork, db_url: str) -> None:
    async def kill(ex: Exchange) -> None:
        if ex.raw.decode().split("|")[9] == "M2":
            admin = await asyncpg.connect(db_url)
            try:
                await admin.execute("SELECT pg_terminate_backend($1)", ex.tx.get_server_pid())
            finally:
                await admin.close()

    items = [(exchange(siu("S12", f"M{i}")), writer(before=kill)) for i in range(5)]
    pipeline_like = await run_all(uow, items, asyncio.Event())
    assert all(e is not None for e in pipeline_like)
    assert [r["control_id"] for r in await journal_rows(db_url)] == ["HOLD"]
    # The store recovers by itself: the next message commits.
    ex = exchange(siu("S12", "AFTER"))
    await uow.run(ex, writer())
    assert [r["control_id"] for r in await journal_rows(db_url)] == ["HOLD", "AFTER"]


class _Stage:
    def __init__(self, body: Body) -> None:
        self.body = body

    async def __call__(self, ex: Exchange) -> None:
        await self.body(ex)


async def _through_pipeline(store: Store, db_url: str, names: list[str],
                            before: Callable[[Exchange], Awaitable[None]] | None = None,
                            ) -> tuple[Exchange, list[Exchange]]:
    """HOLD through a one-stage pipeline, then ``names`` queued behind it as one batch."""
    await _probe_table(db_url)
    uow = GroupUnitOfWork(store, "scheduling", writers=1)
    gate = asyncio.Event()

    async def hold(ex: Exchange) -> None:
        if ex.raw.decode().split("|")[9] == "HOLD":
            await gate.wait()
        elif before is not None:
            await before(ex)

    spec = StageSpec("probe", "test", object, lambda o, r: None, transactional=True)
    pipeline = Pipeline("scheduling", [(spec, _Stage(writer(before=hold, ref="nowhere")))], uow)
    first = exchange(siu("S12", "HOLD"))
    held = asyncio.create_task(pipeline.run(first))
    await asyncio.sleep(0.05)
    members = [exchange(siu("S12", name)) for name in names]
    runs = [asyncio.create_task(pipeline.run(ex)) for ex in members]
    await asyncio.sleep(0.05)
    assert len(uow._queue) == len(members)
    gate.set()
    await asyncio.gather(held, *runs)
    return first, members


async def test_the_pipeline_answers_ar_207_only_for_the_member_whose_commit_fails(
        store: Store, db_url: str) -> None:
    first, members = await _through_pipeline(store, db_url, ["M1", "M2-bad", "M3"])
    assert first.outcome is Outcome.ACCEPTED
    assert [ex.outcome for ex in members] == [Outcome.ACCEPTED, Outcome.RETRY, Outcome.ACCEPTED]
    assert members[1].problem is not None and members[1].problem.code == 207
    assert [r["control_id"] for r in await journal_rows(db_url)] == ["HOLD", "M1", "M3"]


async def test_the_pipeline_answers_ar_207_for_every_member_when_the_database_goes_away(
        store: Store, db_url: str) -> None:
    async def kill(ex: Exchange) -> None:
        if ex.raw.decode().split("|")[9] == "M2":
            admin = await asyncpg.connect(db_url)
            try:
                await admin.execute("SELECT pg_terminate_backend($1)", ex.tx.get_server_pid())
            finally:
                await admin.close()

    first, members = await _through_pipeline(store, db_url, ["M1", "M2", "M3"], before=kill)
    assert first.outcome is Outcome.ACCEPTED
    assert [ex.outcome for ex in members] == [Outcome.RETRY] * 3
    assert all(ex.problem is not None and ex.problem.code == 207 for ex in members)
    assert all(ex.journal_id is None for ex in members)
    assert [r["control_id"] for r in await journal_rows(db_url)] == ["HOLD"]
    assert [r["n"] for r in await fetch(db_url, "SELECT n FROM probe")] == ["HOLD"]


async def test_connections_keep_their_order_under_group_commit(store: Store, db_url: str) -> None:
    """Sixteen 'connections', each with one message in flight: every message commits, each
    connection's messages in the order sent, and most share transactions."""
    await _probe_table(db_url)
    uow = GroupUnitOfWork(store, "scheduling", writers=2)
    body = writer()

    async def connection(c: int) -> list[Exchange]:
        sent = []
        for i in range(12):
            ex = exchange(siu("S12", f"C{c}-{i}"))
            await uow.run(ex, body)
            sent.append(ex)
        return sent

    per_connection = await asyncio.gather(*(connection(c) for c in range(16)))
    rows = {r["control_id"]: r["id"] for r in await journal_rows(db_url)}
    assert len(rows) == 16 * 12
    for sent in per_connection:
        ids = [rows[ex.raw.decode().split("|")[9]] for ex in sent]
        assert ids == sorted(ids)
        assert [ex.journal_id for ex in sent] == ids
    transactions = {ex.data["tx"] for sent in per_connection for ex in sent}
    assert len(transactions) < 16 * 12 / 2


async def test_outbox_rows_ride_on_the_commit_even_when_they_hold_the_quote_tag(
        store: Store, db_url: str) -> None:
    await _probe_table(db_url)
    uow = GroupUnitOfWork(store, "scheduling")

    async def body(ex: Exchange) -> None:
        defer(ex, "sms", "k-tag", {"body": "a $radsched_deferred$ b ' \\ \u00e9"})
        defer(ex, "sms", "k-plain", {"body": "it's"})

    await uow.run(exchange(siu("S12", "T1")), body)
    rows = await outbox_rows(db_url, "SELECT dedupe_key, payload->>'body' AS body FROM outbox ORDER BY id")
    assert rows == [{"dedupe_key": "k-tag", "body": "a $radsched_deferred$ b ' \\ \u00e9"},
                    {"dedupe_key": "k-plain", "body": "it's"}]
    assert deferred.commit_sql([{"kind": "sms", "dedupe_key": "k", "payload": {"x": "it's"}}]
                               ).endswith("; COMMIT")
    assert deferred.commit_sql([]) == "COMMIT"


async def test_outbox_rows_on_the_commit_keep_every_column_and_the_first_of_a_key(
        store: Store, db_url: str) -> None:
    """The rows go in the COMMIT's query, in one statement (the prepared insert for a row,
    radsched_enqueue for an array of rows in order): due time (given or now), appointment id (or
    none), the first row of a dedupe key kept; a key ending
    with the quote tag's first part (which the closing tag would complete) takes the flush path
    and is stored as given."""
    await _probe_table(db_url)
    uow = GroupUnitOfWork(store, "scheduling")
    later = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)

    async def body(ex: Exchange) -> None:
        defer(ex, "sms", "k-later", {"n": 1}, not_before=later, appointment_id=41)
        defer(ex, "sms", "k-now", {"n": 2})
        defer(ex, "sms", "k-later", {"n": 3}, appointment_id=42)

    async def tagged(ex: Exchange) -> None:
        defer(ex, "sms", "k-$radsched_deferred", {"n": 4}, appointment_id=43)

    assert deferred.commit_sql([{"kind": "sms", "dedupe_key": "x", "payload": {}}]).startswith(
        "EXECUTE radsched_outbox_add(")
    assert deferred.commit_sql([{"kind": "sms", "dedupe_key": "x", "payload": {}},
                                {"kind": "sms", "dedupe_key": "y", "payload": {}}]).startswith(
        "SELECT radsched_enqueue(")
    assert deferred.commit_sql([{"kind": "sms", "dedupe_key": "k-$radsched_deferred",
                                 "payload": {}}]) == ""
    before = datetime.now(UTC)
    await uow.run(exchange(siu("S12", "T1")), body)
    await uow.run(exchange(siu("S12", "T2")), tagged)
    rows = await outbox_rows(db_url, "SELECT dedupe_key, payload->>'n' AS n, next_attempt_at, "
                                     "appointment_id, status FROM outbox ORDER BY id")
    assert [(r["dedupe_key"], r["n"], r["appointment_id"], r["status"]) for r in rows] == [
        ("k-later", "1", 41, "pending"), ("k-now", "2", None, "pending"),
        ("k-$radsched_deferred", "4", 43, "pending")]
    assert rows[0]["next_attempt_at"] == later
    assert before - timedelta(seconds=5) <= rows[1]["next_attempt_at"] <= datetime.now(UTC)


async def test_each_pooled_connection_prepares_the_outbox_insert_and_one_that_lost_it_recovers(
        store: Store, db_url: str) -> None:
    """Every pooled connection prepares the outbox insert when it opens; one whose statement
    went missing (here: DEALLOCATE by hand) fails that one commit, nothing of it written, and
    prepares it again for the next."""
    await _probe_table(db_url)
    uow = GroupUnitOfWork(store, "scheduling")
    held = "SELECT count(*) FROM pg_prepared_statements WHERE name = 'radsched_outbox_add'"
    async with store.connection() as conn:      # the pool's only connection so far
        assert await conn.fetchval(held) == 1
        await conn.execute("DEALLOCATE radsched_outbox_add")
    with pytest.raises(asyncpg.InvalidSQLStatementNameError):
        await uow.run(exchange(siu("S12", "LOST")), writer())
    await uow.run(exchange(siu("S12", "AGAIN")), writer())
    assert [r["dedupe_key"] for r in await outbox_rows(db_url, "SELECT dedupe_key FROM outbox")] == [
        "k-AGAIN"]
    assert [r["n"] for r in await fetch(db_url, "SELECT n FROM probe")] == ["AGAIN"]
    async with store.connection() as conn:
        assert await conn.fetchval(held) == 1


async def test_a_store_opened_before_the_schema_prepares_the_insert_on_first_use(
        pg_server: str) -> None:
    """A pool opened on a database not migrated yet cannot prepare the insert at its start (no
    outbox table): its first commit with a text prepares it."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(pg_server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = with_database(pg_server, name)
    try:
        store = await Store.open(url, pool_min=1, pool_max=1, connect_timeout=5.0,
                                 command_timeout=10.0)
        try:
            await migrate(url)
            await _probe_table(url)
            uow = GroupUnitOfWork(store, "scheduling")
            await uow.run(exchange(siu("S12", "FIRST")), writer())
            await uow.run(exchange(siu("S12", "NEXT")), writer())
            rows = await outbox_rows(url, "SELECT dedupe_key FROM outbox ORDER BY id")
            assert [r["dedupe_key"] for r in rows] == ["k-FIRST", "k-NEXT"]
        finally:
            await store.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_non_ascii_text_rides_on_the_commit_unchanged(store: Store, db_url: str) -> None:
    """The deferred rows travel as UTF-8 JSON inside the COMMIT's query text (orjson writes no
    \\u escapes): accented, CJK and astral characters, quotes and backslashes come back as sent."""
    await _probe_table(db_url)
    uow = GroupUnitOfWork(store, "scheduling")
    text = "Jos\u00e9 M\u00fcller \u5c71\u7530 \U0001f4c5 'x' \\ \"y\""

    async def body(ex: Exchange) -> None:
        defer(ex, "sms", "k-utf8", {"body": text, "n": {1: "int key"}})

    await uow.run(exchange(siu("S12", "T1")), body)
    assert "Jos\u00e9 M\u00fcller \u5c71\u7530" in deferred.commit_sql(   # as UTF-8
        [{"kind": "sms", "dedupe_key": "k", "payload": {"body": text}}])
    rows = await outbox_rows(db_url, "SELECT payload FROM outbox WHERE dedupe_key = 'k-utf8'")
    assert json.loads(rows[0]["payload"]) == {"body": text, "n": {"1": "int key"}}


async def test_deleting_an_appointment_still_takes_its_resources_and_unlinks_its_texts(
        store: Store, db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        aid = await conn.fetchval(
            "INSERT INTO appointments (appointment_key, channel, datetime, end_at) "
            "VALUES ('c|F:1', 'c', now(), now()) RETURNING id")
        await conn.execute("INSERT INTO appointment_resources (appointment_id, kind, code, start_at, "
                           "end_at) VALUES ($1, 'location', 'R1', now(), now())", aid)
        await conn.execute("INSERT INTO outbox (kind, dedupe_key, payload, appointment_id) "
                           "VALUES ('sms', 'k', '{}', $1)", aid)
        await conn.execute("INSERT INTO outbox_intake (kind, dedupe_key, payload, appointment_id) "
                           "VALUES ('sms', 'k2', '{}', $1)", aid)
        await conn.execute("DELETE FROM appointments WHERE id = $1", aid)
        assert await conn.fetchval("SELECT count(*) FROM appointment_resources") == 0
        assert await conn.fetchval("SELECT appointment_id FROM outbox") is None
        assert await conn.fetchval("SELECT appointment_id FROM outbox_intake") is None
    finally:
        await conn.close()
