"""The unit of work against real PostgreSQL: commit with journal, roll back but journal, record."""

from __future__ import annotations

import asyncio
import json

import pytest

from radsched_engine.errors import Drop, Problem, Reject
from radsched_engine.exchange import Exchange, Outcome
from radsched_engine.pipeline import Pipeline, StageSpec
from radsched_engine.store import Store
from radsched_engine.store.outbox import enqueue

from .helpers import exchange, fetch, journal_rows, siu

RAW = siu("S12", "MSG00001", "SCH|P1|F1", "PID|1||MRN1^^^HOSP^MR||Doe^Jane")


async def test_accepted_message_commits_effects_and_journal(store: Store, db_url: str) -> None:
    ex = exchange(RAW)
    async with store.unit_of_work("scheduling").transaction(ex):
        assert ex.tx is not None
        assert await enqueue(ex.tx, "sms", "k1", {"to": "x"})
    assert ex.tx is None
    rows = await journal_rows(db_url)
    assert len(rows) == 1
    row = rows[0]
    assert ex.journal_id == row["id"]
    assert row["outcome"] == "accepted" and row["ack_code"] == "AA"
    assert row["raw"] == RAW
    assert (row["control_id"], row["sending_application"], row["sending_facility"]) == (
        "MSG00001", "RIS", "RAD")
    assert row["message_type"] == "SIU^S12" and row["channel"] == "scheduling"
    assert row["error"] is None and row["error_code"] is None
    assert len(await fetch(db_url, "SELECT * FROM outbox")) == 1


async def test_rejected_message_rolls_back_effects_but_keeps_journal(store: Store, db_url: str) -> None:
    ex = exchange(RAW)
    async with store.unit_of_work("scheduling").transaction(ex):
        await enqueue(ex.tx, "sms", "k1", {"to": "x"})
        ex.outcome = Outcome.REJECTED
        ex.problem = Problem(204, "no such appointment", None)
    rows = await journal_rows(db_url)
    assert [(r["outcome"], r["ack_code"], r["error_code"], r["error"]) for r in rows] == [
        ("rejected", "AE", 204, "no such appointment")]
    assert ex.journal_id == rows[0]["id"]
    assert await fetch(db_url, "SELECT * FROM outbox") == []


async def test_raw_bytes_are_stored_byte_exact(store: Store, db_url: str) -> None:
    raw = siu("S12", "MSG2", "SCH|P1|F1", "NTE|1||caf\xe9 \x00\x7f".replace("\x00", ""),
              "ZZZ|\x01").replace(b"caf\xc3\xa9", b"caf\xe9") + b"\n\r\n"
    ex = exchange(raw)
    ex.outcome = Outcome.REJECTED
    ex.problem = Problem(100, "broken")
    await store.unit_of_work("scheduling").record(ex)
    rows = await journal_rows(db_url)
    assert rows[0]["raw"] == raw


async def test_record_journals_a_message_without_usable_msh(store: Store, db_url: str) -> None:
    ex = exchange(b"garbage, not HL7")
    ex.outcome = Outcome.REJECTED
    ex.problem = Problem(100, "no usable MSH segment")
    await store.unit_of_work("scheduling").record(ex)
    [row] = await journal_rows(db_url)
    assert row["raw"] == b"garbage, not HL7"
    # a frame without a usable MSH is answered AR (nothing identifies it); the journal says so
    assert (row["control_id"], row["message_type"], row["outcome"], row["ack_code"]) == (
        "", "", "rejected", "AR")
    assert ex.journal_id == row["id"]


async def test_refused_codes_are_journaled_as_ar(store: Store, db_url: str) -> None:
    ex = exchange(RAW)
    ex.outcome = Outcome.REJECTED
    ex.problem = Problem(201, "unsupported event")
    await store.unit_of_work("scheduling").record(ex)
    [row] = await journal_rows(db_url)
    assert row["ack_code"] == "AR"


async def test_an_exception_inside_rolls_back_and_journals_nothing(store: Store, db_url: str) -> None:
    ex = exchange(RAW)
    with pytest.raises(RuntimeError):
        async with store.unit_of_work("scheduling").transaction(ex):
            await enqueue(ex.tx, "sms", "k1", {"to": "x"})
            raise RuntimeError("boom")
    assert ex.journal_id is None
    assert await journal_rows(db_url) == []
    assert await fetch(db_url, "SELECT * FROM outbox") == []
    # the connection went back to the pool in a usable state
    async with store.unit_of_work("scheduling").transaction(exchange(RAW)):
        pass
    assert len(await journal_rows(db_url)) == 1


class _Writer:
    """A transactional stage that writes an outbox row, then does what the message says."""

    def __init__(self, options: object, resources: object) -> None:
        pass

    async def __call__(self, ex: Exchange) -> None:
        await enqueue(ex.tx, "sms", f"k-{ex.channel}-{len(ex.raw)}", {"n": 1})
        if b"REJECT" in ex.raw:
            raise Reject(205, "duplicate key", "SCH-2")
        if b"DROP" in ex.raw:
            raise Drop("filtered")
        ex.warnings.append(Problem(0, "note", None, "W"))


async def test_pipeline_runner_with_the_real_unit_of_work(store: Store, db_url: str) -> None:
    spec = StageSpec("writer", "test", object, _Writer, transactional=True)
    pipeline = Pipeline("scheduling", [(spec, _Writer(None, None))], store.unit_of_work("scheduling"))
    ok, bad, dropped = exchange(RAW), exchange(RAW + b"NTE|1||REJECT\r"), exchange(RAW + b"NTE|DROP\r")
    for ex in (ok, bad, dropped):
        await pipeline.run(ex)
    assert (ok.outcome, bad.outcome, dropped.outcome) == (
        Outcome.ACCEPTED, Outcome.REJECTED, Outcome.FILTERED)
    rows = await journal_rows(db_url)
    assert [(r["outcome"], r["ack_code"], r["error_code"], r["error_location"]) for r in rows] == [
        ("accepted", "AA", None, None), ("rejected", "AE", 205, "SCH-2"),
        ("filtered", "AA", None, None)]
    assert json.loads(rows[0]["warnings"]) == [{"code": 0, "text": "note", "severity": "W", "location": None}]
    assert [r["id"] for r in rows] == [ok.journal_id, bad.journal_id, dropped.journal_id]
    assert len(await fetch(db_url, "SELECT * FROM outbox")) == 2     # the rejected one rolled back


class _Prepared:
    """A transactional stage with a ``prepare`` hook: notes what it saw before the transaction
    and writes it (with what the stage before it prepared) from inside it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def prepare(self, ex: Exchange) -> None:
        if b"BUG" in ex.raw:
            raise ValueError("a bug in prepare")
        ex.data.setdefault("prepared", []).append((self.name, ex.tx is None))

    async def __call__(self, ex: Exchange) -> None:
        await enqueue(ex.tx, "sms", f"{self.name}-{len(ex.raw)}", {"seen": ex.data["prepared"]})


async def test_prepare_hooks_run_in_order_before_the_transaction(store: Store, db_url: str) -> None:
    first = StageSpec("first", "test", object, lambda *_: None, transactional=True)
    second = StageSpec("second", "test", object, lambda *_: None, transactional=True)
    pipeline = Pipeline("scheduling", [(first, _Prepared("first")), (second, _Prepared("second"))],
                        store.unit_of_work("scheduling"))
    ok = exchange(RAW)
    await pipeline.run(ok)
    assert ok.outcome == Outcome.ACCEPTED
    assert ok.data["prepared"] == [("first", True), ("second", True)]   # both before any tx
    rows = await fetch(db_url, "SELECT dedupe_key, payload FROM outbox ORDER BY id")
    assert [(r["dedupe_key"], json.loads(r["payload"])) for r in rows] == [
        (f"first-{len(RAW)}", {"seen": [["first", True], ["second", True]]}),
        (f"second-{len(RAW)}", {"seen": [["first", True], ["second", True]]})]
    # a prepare that fails is answered like a failing stage: AR 207 naming it, journaled,
    # and no transactional stage runs
    broken = exchange(siu("S12", "MSG00002", "SCH|P1|F1", "NTE|1||BUG"))
    await pipeline.run(broken)
    assert broken.outcome == Outcome.ERROR and broken.problem.code == 207
    assert "in stage first" in broken.problem.text
    assert [(r["control_id"], r["outcome"], r["ack_code"]) for r in await journal_rows(db_url)] == [
        ("MSG00001", "accepted", "AA"), ("MSG00002", "error", "AR")]
    assert len(await fetch(db_url, "SELECT * FROM outbox")) == 2


async def test_outbox_enqueue_keeps_the_first_row_per_dedupe_key(store: Store, db_url: str) -> None:
    async with store.connection() as conn:
        assert await enqueue(conn, "sms", "appt-1-confirm", {"a": 1})
        assert not await enqueue(conn, "sms", "appt-1-confirm", {"a": 2})
    [row] = await fetch(db_url, "SELECT * FROM outbox")
    assert row["status"] == "pending" and row["attempts"] == 0 and row["kind"] == "sms"


async def test_concurrent_units_of_work(store: Store, db_url: str) -> None:
    async def one(i: int) -> None:
        ex = exchange(siu("S12", f"C{i}", "SCH|P1|F1"))
        async with store.unit_of_work("scheduling").transaction(ex):
            await enqueue(ex.tx, "sms", f"k{i}", {"i": i})

    await asyncio.gather(*(one(i) for i in range(20)))
    assert len(await journal_rows(db_url)) == 20
    assert await store.healthy()


async def test_json_values_cross_the_store_codec_unchanged(store: Store) -> None:
    """Pooled connections encode and decode json/jsonb (binary format, so also inside a row
    value returned by a function): text beyond ASCII, numbers, nulls, nesting; non-string keys
    become strings, as JSON has them."""
    value = {"name": "Jos\u00e9 \u5c71\u7530 \U0001f4c5 \"q\" \\", "n": 1.5, "big": 2 ** 53,
             "list": [1, None, True, {"x": []}], 7: "int key"}
    expected = {**{k: v for k, v in value.items() if k != 7}, "7": "int key"}
    async with store.connection() as conn:
        assert await conn.fetchval("SELECT $1::jsonb", value) == expected
        assert await conn.fetchval("SELECT $1::json", value) == expected
        row = await conn.fetchval("SELECT ROW(1, $1::jsonb)", value)
        assert row[1] == expected
