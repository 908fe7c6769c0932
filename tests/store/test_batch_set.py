"""Group-commit batches on real PostgreSQL: new bookings that cannot see each other are written in one
set-based statement, with the same stored result as one call each; everything else (bookings that
could meet, redeliveries, stored appointments, neighbours) goes call by call in member order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from radsched_engine import metrics
from radsched_engine.exchange import Exchange, Outcome
from radsched_engine.store import Store
from radsched_engine.store.appointments import PersistCall, persist_set, set_wise
from radsched_engine.store.group import GroupUnitOfWork
from tests.conflicts.helpers import Channel, findings, siu
from tests.store.helpers import fetch

# One channel with a conflict check (radsched_book's path), one without (the plain apply).
WITH_CHECK = None
WITHOUT_CHECK = "  - parse\n  - validate\n  - persist\n  - notify\n"

STORED = ("SELECT a.appointment_key, a.alt_key, a.patient_id, a.patient_name, a.patient_phone, "
          "a.patient_key, a.modality, a.study_type, a.datetime, a.duration, a.end_at, a.status, "
          "a.urgency, a.conflicts, a.placer_id, a.filler_id, a.order_refs, a.last_trigger, "
          "a.last_event_time, a.last_message_id = m.id AS journal_linked, m.outcome, m.ack_code, "
          "m.raw, m.message_type, m.control_id, m.appointment_id = a.id AS journal_points_back, "
          "(SELECT array_agg(row(r.kind, r.code, r.text, r.role, r.start_at, r.end_at, r.active) "
          "         ORDER BY r.kind, r.code) FROM appointment_resources AS r "
          "  WHERE r.appointment_id = a.id) AS resources "
          "FROM appointments AS a JOIN hl7_messages AS m ON m.appointment_id = a.id "
          "WHERE a.appointment_key = $1")


def written(path: str) -> float:
    return metrics.BATCH_WRITES.labels(path)._value.get()


async def held_batch(store: Store, db_url: str, channel: Channel, messages: list[bytes], *,
                     body: Callable[[Channel], Callable[[Exchange], Awaitable[None]]] | None = None,
                     ) -> list[Exchange]:
    """Send ``messages`` so that they wait together behind a held writer: one batch."""
    uow = GroupUnitOfWork(store, channel.name, writers=1)
    channel.pipeline.unit_of_work = uow
    holder = await asyncpg.connect(db_url)
    tx = holder.transaction()
    await tx.start()
    await holder.execute("LOCK TABLE hl7_messages IN SHARE ROW EXCLUSIVE MODE")
    first = asyncio.create_task(channel.send(siu(control="HOLD", filler="HOLD", mrn="MHOLD",
                                                 room="HOLDROOM", start="20260401090000")))
    await asyncio.sleep(0.2)
    sent = []
    for raw in messages:
        sent.append(asyncio.create_task(channel.send(raw)))
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert len(uow._queue) == len(messages)             # all waiting behind the first
    await tx.rollback()
    await holder.close()
    await first
    return list(await asyncio.gather(*sent))


def bookings(n: int, tag: str) -> list[bytes]:
    """``n`` new bookings with nothing in common (room, patient, keys, control ids)."""
    first = datetime(2026, 3, 10, 9, 0)
    return [siu(control=f"{tag}{i}", filler=f"{tag}{i}", mrn=f"M{tag}{i}", room=f"R{tag}{i}",
                staff=(f"T{tag}{i}", "TECH"), start=f"{first + timedelta(hours=i):%Y%m%d%H%M}")
            for i in range(n)]


def same_shape(rows: list[Any]) -> list[dict[str, Any]]:
    """A stored booking without what differs from one message to the next."""
    out = []
    for row in rows:
        value = dict(row)
        for key in ("appointment_key", "alt_key", "patient_id", "patient_key", "placer_id",
                    "filler_id", "control_id", "raw", "datetime", "end_at"):
            value.pop(key)
        value["resources"] = [tuple(v for i, v in enumerate(r) if i not in (1, 4, 5))
                              for r in value["resources"]]
        out.append(value)
    return out


async def test_independent_bookings_go_in_one_statement_and_are_stored_as_one_call_each(
        store: Store, db_url: str) -> None:
    for steps, tag in ((WITH_CHECK, "S"), (WITHOUT_CHECK, "N")):
        channel = Channel(store, steps)
        alone = await channel.send(bookings(1, f"{tag}A")[0])     # one call, no batch
        assert alone.outcome is Outcome.ACCEPTED
        before = written("set"), written("one_by_one")
        messages = bookings(5, tag)
        results = await held_batch(store, db_url, channel, messages)
        assert [ex.outcome for ex in results] == [Outcome.ACCEPTED] * 5
        assert (written("set"), written("one_by_one")) == (before[0] + 5, before[1])
        reference = same_shape(await fetch(db_url, STORED, f"scheduling|F:{tag}A0"))
        assert reference and reference[0]["journal_linked"] and reference[0]["journal_points_back"]
        for i, (raw, ex) in enumerate(zip(messages, results, strict=True)):
            rows = await fetch(db_url, STORED, f"scheduling|F:{tag}{i}")
            assert len(rows) == 1 and rows[0]["raw"] == raw and rows[0]["control_id"] == f"{tag}{i}"
            assert same_shape(rows) == reference                  # same row, resources, journal
            assert ex.journal_id is not None and ex.data["appointment"]["appointment_key"] == (
                f"scheduling|F:{tag}{i}")
        if steps is WITH_CHECK:                                   # the advice stored, no conflict
            assert [await findings(db_url, f"{tag}{i}") for i in range(5)] == [[]] * 5
            assert await findings(db_url, f"{tag}0", prep=True) == await findings(
                db_url, f"{tag}A0", prep=True)


async def test_bookings_that_could_meet_go_one_by_one_and_see_each_other(
        store: Store, db_url: str) -> None:
    channel = Channel(store)
    before = written("set"), written("one_by_one")
    # X and Y book one room at one time: the second must see the first.
    results = await held_batch(store, db_url, channel, [
        siu(control="X", filler="X", mrn="MX", room="SCAN"),
        siu(control="Y", filler="Y", mrn="MY", room="SCAN")])
    assert [ex.outcome for ex in results] == [Outcome.ACCEPTED] * 2
    assert (written("set"), written("one_by_one")) == (before[0], before[1] + 2)
    assert [e["other"] for e in await findings(db_url, "Y")] == ["scheduling|F:X"]


async def test_what_the_database_finds_sends_the_batch_call_by_call(store: Store, db_url: str) -> None:
    """A redelivery or an appointment booked before under a key: the set-based statement writes
    nothing and says so; the calls go one by one."""
    channel = Channel(store)
    first = siu(control="D1", filler="D1", mrn="MD1", room="RD1")
    assert (await channel.send(first)).outcome is Outcome.ACCEPTED
    assert (await channel.send(siu(control="K1", filler="K1", mrn="MK1", room="RK1"))).outcome \
        is Outcome.ACCEPTED
    cases = {
        "redelivery": ([first], [Outcome.DUPLICATE]),
        "stored key": ([siu(control="K2", filler="K1", mrn="MK2", room="RK2")],
                       [Outcome.REJECTED]),
    }
    for name, (extra, outcomes) in cases.items():
        before = written("set"), written("one_by_one")
        fresh = siu(control=f"F-{name}", filler=f"F-{name}", mrn=f"MF-{name}", room=f"RF-{name}")
        results = await held_batch(store, db_url, channel, [fresh, *extra])
        assert [ex.outcome for ex in results] == [Outcome.ACCEPTED, *outcomes], name
        assert written("set") == before[0], name
        assert written("one_by_one") >= before[1] + 1, name
    rows = await fetch(db_url, "SELECT count(*) AS n FROM hl7_messages WHERE control_id = 'D1' "
                               "AND outcome = 'accepted'")
    assert rows[0]["n"] == 1                                     # the redelivery applied once
    assert len(await fetch(db_url, "SELECT 1 FROM appointments WHERE appointment_key LIKE "
                                   "'scheduling|F:F-%'")) == 2


async def test_stored_neighbours_come_back_with_the_set_based_statement(
        store: Store, db_url: str) -> None:
    """Bookings next to stored ones (a room, a technologist, a patient) are still written
    together; each gets its own neighbours, as one call each would."""
    channel = Channel(store)
    for raw in (siu(control="N1", filler="N1", mrn="MN1", room="RN1"),
                siu(control="P1", filler="P1", mrn="MP1", room="RP1", start="20260320090000"),
                siu(control="T1", filler="T1", mrn="MT1", room="RT1", staff=("TT", "TECH"),
                    start="20260322090000")):
        assert (await channel.send(raw)).outcome is Outcome.ACCEPTED
    before = written("set")
    results = await held_batch(store, db_url, channel, [
        siu(control="N2", filler="N2", mrn="MN2", room="RN1"),               # same room and time
        siu(control="P2", filler="P2", mrn="MP1", room="RP2", code="70551", text="MRI BRAIN",
            start="20260320091500"),                                         # same patient
        siu(control="T2", filler="T2", mrn="MT2", room="RT2", staff=("TT", "TECH"),
            start="20260322090000"),                                         # same technologist
        siu(control="Q2", filler="Q2", mrn="MQ2", room="RQ2")])              # nothing around it
    assert [ex.outcome for ex in results] == [Outcome.ACCEPTED] * 4
    assert written("set") == before + 4
    assert [(e["rule"], e["other"]) for e in await findings(db_url, "N2")] == [
        ("RES-ROOM-OVERLAP", "scheduling|F:N1")]
    assert [(e["rule"], e["other"]) for e in await findings(db_url, "P2")] == [
        ("PAT-DOUBLE-BOOK", "scheduling|F:P1")]
    assert [e["other"] for e in await findings(db_url, "T2")] == ["scheduling|F:T1"]
    assert await findings(db_url, "Q2") == []
    for stored, new in (("N1", "N2"), ("P1", "P2"), ("T1", "T2")):          # and the mirrors
        assert [e["other"] for e in await findings(db_url, stored)] == [f"scheduling|F:{new}"]


async def test_a_member_using_the_connection_after_its_persist_call_runs_again_alone(
        store: Store, db_url: str) -> None:
    channel = Channel(store)
    body = channel.pipeline._transaction_body

    async def reads_after_persist(ex: Exchange) -> None:
        await body(ex)
        ex.data["read_after"] = await ex.tx.fetchval("SELECT count(*) FROM appointments")

    channel.pipeline._transaction_body = reads_after_persist    # a stage that breaks the rule
    results = await held_batch(store, db_url, channel, bookings(3, "L"))
    assert [ex.outcome for ex in results] == [Outcome.ACCEPTED] * 3
    assert all(ex.data["read_after"] >= 1 for ex in results)
    assert len(await fetch(db_url, "SELECT 1 FROM appointments WHERE appointment_key LIKE "
                                   "'scheduling|F:L%'")) == 3


def test_only_calls_that_cannot_see_each_other_are_set_wise() -> None:
    def call(key: str, *, message: int, locks: list[int] | None, trigger: str = "S12",
             refs: list[str] | None = None, resources: list[Any] | None = None) -> PersistCall:
        fields = {"order_refs": refs} if refs is not None else {}
        context = (locks, ["location"], ["R"], None, None, "", None, None) if locks is not None else None
        return PersistCall(context, ({}, b"", b"", message, [key], trigger, None, fields,
                                     [] if resources is None else resources, False))

    assert set_wise([call("A", message=1, locks=[1, 2]), call("B", message=2, locks=[3])])
    assert set_wise([call("A", message=1, locks=None), call("B", message=2, locks=None)])
    assert not set_wise([call("A", message=1, locks=[1, 2]), call("B", message=2, locks=[2])])
    assert not set_wise([call("A", message=1, locks=[1]), call("A", message=2, locks=[2])])
    assert not set_wise([call("A", message=1, locks=[1]), call("B", message=1, locks=[2])])
    assert not set_wise([call("A", message=1, locks=[1]), call("B", message=2, locks=[2],
                                                               trigger="S13")])
    assert not set_wise([call("A", message=1, locks=[1]), call("B", message=2, locks=[2],
                                                               refs=["P:9"])])
    no_resources = call("B", message=2, locks=[2])
    no_resources = PersistCall(no_resources.context, (*no_resources.apply[:8], None, False))
    assert not set_wise([call("A", message=1, locks=[1]), no_resources])


class _Capture:
    """Stands in for a batch member's connection: keeps the persist call, sends nothing."""

    def __init__(self) -> None:
        self.calls: list[PersistCall] = []

    async def park(self, call: PersistCall) -> list[Any]:
        self.calls.append(call)
        raise _Captured


class _Captured(Exception):
    pass


async def test_the_set_based_statement_reads_only_what_its_bookings_name(
        store: Store, db_url: str) -> None:
    """Its redelivery, stored-key and neighbour lookups are index probes per booking, whatever the
    number of stored messages (a join planned over every accepted journal row once made each
    batch read them all): with 300 bookings stored, two new ones read no stored row."""
    channel = Channel(store)
    for raw in bookings(300, "B"):
        assert (await channel.send(raw)).outcome is Outcome.ACCEPTED
    capture = _Capture()
    stages = {s.name: s.stage for s in channel.pipeline._transactional}
    for raw in bookings(2, "Z"):
        ex = Exchange(raw, channel.name, "127.0.0.1:5000", datetime.now(UTC))
        await channel.pipeline._run_steps(channel.pipeline._plain, ex)   # parse, validate
        ex.tx = capture
        await stages["conflict_check"](ex)
        try:
            await stages["persist"](ex)
        except _Captured:
            pass
    assert len(capture.calls) == 2 and set_wise(capture.calls)

    reads = ("SELECT t.relname, coalesce(t.seq_tup_read, 0) + coalesce((SELECT sum(i.idx_tup_read) "
             "FROM pg_stat_user_indexes AS i WHERE i.relid = t.relid), 0) AS n "
             "FROM pg_stat_user_tables AS t WHERE t.relname IN ('hl7_messages', 'appointments', "
             "'appointment_resources')")
    async with store.connection() as conn:
        await conn.execute("SELECT pg_stat_force_next_flush()")
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        before = {r["relname"]: r["n"] for r in await conn.fetch(reads)}
        async with conn.transaction():
            rows = await persist_set(conn, capture.calls)
        await conn.execute("SELECT pg_stat_force_next_flush()")
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        after = {r["relname"]: r["n"] for r in await conn.fetch(reads)}
    assert rows is not None and [r[-1]["result"] for r in rows] == ["applied", "applied"]
    # (With the journal lookup planned as a join over every accepted row: hl7_messages 300.)
    assert {name: after[name] - before[name] for name in after} == {
        "hl7_messages": 0, "appointments": 0, "appointment_resources": 0}
