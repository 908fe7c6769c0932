"""The conflict_check stage on a real PostgreSQL: parse → validate → conflict_check → persist, from YAML."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from radsched_engine import metrics
from radsched_engine.config.hints import schema_issues
from radsched_engine.config.pipeline_steps import lint_example
from radsched_engine.errors import Location
from radsched_engine.exchange import Outcome
from radsched_engine.integrations.claude import ClaudeAnalyzer, ClaudeSettings
from radsched_engine.stages.conflict_check import SPEC, ConflictCheckOptions
from radsched_engine.store import Store
from tests.conflicts.helpers import Channel, appointment_id, findings, rules_of, siu
from tests.store.helpers import fetch, journal_rows, outbox_rows

ROOM = "RES-ROOM-OVERLAP"
BLOCK_STEPS = "  - parse\n  - validate\n  - conflict_check: {policy: block}\n  - persist\n"


def test_spec_is_a_good_schema_and_its_example_lints() -> None:
    assert schema_issues(ConflictCheckOptions) == []
    assert lint_example(SPEC) == []
    assert SPEC.transactional and SPEC.after == ("parse",)


@pytest.fixture
def channel(store: Store) -> Channel:
    return Channel(store)


def counted(rule: str, severity: str) -> float:
    return metrics.CONFLICTS.labels(rule, severity, "rules").value


async def test_double_booked_room_is_flagged_on_both_and_counted(channel: Channel, db_url: str) -> None:
    before = counted(ROOM, "block")
    first = await channel.send(siu(control="C1", filler="A1", mrn="M1"))
    second = await channel.send(siu(control="C2", filler="A2", mrn="M2", start="20260310091500"))
    assert first.outcome is second.outcome is Outcome.ACCEPTED
    a1 = await appointment_id(db_url, "A1")
    [found] = await findings(db_url, "A2")
    assert (found["rule"], found["severity"], found["source"]) == (ROOM, "block", "rules")
    assert (found["other"], found["other_id"]) == ("scheduling|F:A1", a1)
    assert "CT1" in found["message"] and found["details"]["resource"] == "CT1"
    [mirror] = await findings(db_url, "A1")
    assert (mirror["rule"], mirror["other"], mirror["details"]["reverse"]) == (ROOM, "scheduling|F:A2", True)
    assert counted(ROOM, "block") == before + 1


async def test_half_open_intervals_touching_bookings_do_not_conflict(channel: Channel, db_url: str) -> None:
    await channel.send(siu(control="C1", filler="A1", mrn="M1"))
    await channel.send(siu(control="C2", filler="A2", mrn="M2", start="20260310093000"))
    await channel.send(siu(control="C3", filler="A3", mrn="M3", start="20260310083001", minutes=30))
    assert await findings(db_url, "A2") == []
    assert rules_of(await findings(db_url, "A3")) == [(ROOM, "block", "scheduling|F:A1")]


async def test_block_policy_answers_ae_205_naming_rule_and_appointment(store: Store, db_url: str) -> None:
    channel = Channel(store, BLOCK_STEPS)
    await channel.send(siu(control="C1", filler="A1", mrn="M1"))
    ex = await channel.send(siu(control="C2", filler="A2", mrn="M2"))
    assert ex.outcome is Outcome.REJECTED
    a1 = await appointment_id(db_url, "A1")
    assert ex.problem.code == 205 and ex.problem.location == Location.parse("AIL-3")
    assert ROOM in ex.problem.text and f"#{a1}" in ex.problem.text
    assert ROOM in ex.user_text and "F:A1" in ex.user_text
    assert await fetch(db_url, "SELECT 1 FROM appointments WHERE appointment_key = 'scheduling|F:A2'") == []
    assert await findings(db_url, "A1") in ([], None)          # nothing mirrored: rolled back
    assert [r["outcome"] for r in await journal_rows(db_url)] == ["accepted", "rejected"]


async def test_block_policy_still_accepts_warnings(store: Store, db_url: str) -> None:
    channel = Channel(store, BLOCK_STEPS)
    await channel.send(siu(control="C1", filler="A1", mrn="M1", room="CT1"))
    # same patient, another room, 10 minutes after the first ends: a transfer-buffer warning
    ex = await channel.send(siu(control="C2", filler="A2", mrn="M1", room="MR1", code="70551",
                                text="MRI BRAIN", start="20260310094000"))
    assert ex.outcome is Outcome.ACCEPTED
    assert rules_of(await findings(db_url, "A2")) == [("PAT-DOUBLE-BOOK", "warn", "scheduling|F:A1")]


async def test_patient_double_booked_across_modalities(channel: Channel, db_url: str) -> None:
    await channel.send(siu(control="C1", filler="A1", mrn="M1", room="CT1"))
    await channel.send(siu(control="C2", filler="A2", mrn="M1", room="US2", code="76700",
                           text="US ABDOMEN COMPLETE", start="20260310091000"))
    entries = await findings(db_url, "A2")
    assert ("PAT-DOUBLE-BOOK", "block", "scheduling|F:A1") in rules_of(entries)
    assert all(e["rule"] != ROOM for e in entries)


async def test_barium_then_ct_within_72_hours(channel: Channel, db_url: str) -> None:
    await channel.send(siu(control="C1", filler="A1", mrn="M1", room="RF1", code="74240",
                           text="UPPER GI WITH BARIUM", minutes=45))
    await channel.send(siu(control="C2", filler="A2", mrn="M1", room="CT1", start="20260311090000"))
    [seq] = [e for e in await findings(db_url, "A2") if e["rule"] == "SEQ-BARIUM-THEN-CT-ABD"]
    assert seq["other"] == "scheduling|F:A1" and seq["severity"] in ("block", "warn")
    assert any(e["rule"] == "SEQ-BARIUM-THEN-CT-ABD" for e in await findings(db_url, "A1"))
    # the same pair four days apart: no sequencing finding
    await channel.send(siu(control="C3", filler="A3", mrn="M2", room="RF1", code="74240",
                           text="UPPER GI WITH BARIUM", minutes=45))
    await channel.send(siu(control="C4", filler="A4", mrn="M2", room="CT2", start="20260314100000"))
    assert all(e["rule"] != "SEQ-BARIUM-THEN-CT-ABD" for e in await findings(db_url, "A4"))


async def test_cancel_frees_the_slot_and_clears_both_sides(channel: Channel, db_url: str) -> None:
    await channel.send(siu(control="C1", filler="A1", mrn="M1"))
    await channel.send(siu(control="C2", filler="A2", mrn="M2"))
    assert await findings(db_url, "A1") and await findings(db_url, "A2")
    ex = await channel.send(siu("S15", "C3", "A1", mrn="M1", status="Cancelled",
                                sent="20260301130000", resources=False))
    assert ex.outcome is Outcome.ACCEPTED
    assert await findings(db_url, "A1") == [] and await findings(db_url, "A2") == []
    await channel.send(siu(control="C4", filler="A3", mrn="M3", sent="20260301140000"))
    assert rules_of(await findings(db_url, "A3")) == [(ROOM, "block", "scheduling|F:A2")]


async def test_reschedule_moves_the_findings(channel: Channel, db_url: str) -> None:
    await channel.send(siu(control="C1", filler="A1", mrn="M1"))
    await channel.send(siu(control="C2", filler="A2", mrn="M2"))
    await channel.send(siu("S13", "C3", "A2", mrn="M2", start="20260310110000", sent="20260301130000"))
    assert await findings(db_url, "A1") == [] and await findings(db_url, "A2") == []
    # back again, by an S14 that sends only the time: the stored room is what conflicts
    await channel.send(siu("S14", "C4", "A2", mrn="M2", start="20260310090000", sent="20260301140000",
                           resources=False))
    assert rules_of(await findings(db_url, "A2")) == [(ROOM, "block", "scheduling|F:A1")]
    assert rules_of(await findings(db_url, "A1")) == [(ROOM, "block", "scheduling|F:A2")]


async def test_stale_update_changes_nothing(channel: Channel, db_url: str) -> None:
    await channel.send(siu(control="C1", filler="A1", mrn="M1"))
    await channel.send(siu(control="C2", filler="A2", mrn="M2", start="20260310110000",
                           sent="20260301150000"))
    ex = await channel.send(siu("S13", "C3", "A2", mrn="M2", start="20260310090000", sent="20260301130000"))
    assert ex.outcome is Outcome.ACCEPTED and ex.data["persist_result"] == "stale"
    assert await findings(db_url, "A1") in ([], None) and await findings(db_url, "A2") == []


async def test_redelivery_is_not_checked_again(channel: Channel, db_url: str) -> None:
    await channel.send(siu(control="C1", filler="A1", mrn="M1"))
    raw = siu(control="C2", filler="A2", mrn="M2")
    await channel.send(raw)
    again = await channel.send(raw)
    assert again.outcome is Outcome.DUPLICATE and "conflicts" not in again.data
    assert len(await findings(db_url, "A2")) == 1 and len(await findings(db_url, "A1")) == 1


async def test_block_policy_answers_a_redelivery_like_the_first_time(store: Store, db_url: str) -> None:
    flag, block = Channel(store), Channel(store, BLOCK_STEPS)
    await flag.send(siu(control="C1", filler="A1", mrn="M1"))
    raw = siu(control="C2", filler="A2", mrn="M2")
    await flag.send(raw)
    again = await block.send(raw)             # same channel name: a redelivery, not a new booking
    assert again.outcome is Outcome.DUPLICATE


async def test_concurrent_bookings_of_one_slot_never_pass_unseen(store: Store, db_url: str) -> None:
    channel = Channel(store)
    for i in range(8):
        start = f"202603{10 + i:02d}090000"
        a, b = siu(control=f"X{i}", filler=f"X{i}", mrn=f"MX{i}", start=start, room=f"R{i}"), \
            siu(control=f"Y{i}", filler=f"Y{i}", mrn=f"MY{i}", start=start, room=f"R{i}")
        done = await asyncio.gather(channel.send(a), channel.send(b))
        assert [ex.outcome for ex in done] == [Outcome.ACCEPTED, Outcome.ACCEPTED]
        own = [len([e for e in ex.data["conflicts"] if e["other"]]) for ex in done]
        assert sorted(own) == [0, 1], own       # exactly one of the two saw the other
        stored = [await findings(db_url, f"X{i}"), await findings(db_url, f"Y{i}")]
        assert all(len(s) == 1 for s in stored)  # its finding, and the mirror on the other


async def test_facility_zone_is_the_channel_timezone(store: Store, db_url: str) -> None:
    steps = ("  - parse\n  - validate\n  - conflict_check:\n      calendars:\n        enabled: true\n"
             "        default: {hours: [{days: [mon, tue, wed, thu, fri], start: '08:00', end: '17:00'}]}\n"
             "  - persist\n")
    channel = Channel(store, steps, timezone="America/New_York")
    await channel.send(siu(control="C1", filler="A1", mrn="M1", start="20260310090000"))
    assert await findings(db_url, "A1") == []        # 09:00 in New York, not 09:00 UTC
    await channel.send(siu(control="C2", filler="A2", mrn="M2", start="20260310180000"))
    assert [e["rule"] for e in await findings(db_url, "A2")] == ["OUTSIDE-CALENDAR"]


async def test_orders_and_other_messages_pass_untouched(channel: Channel, db_url: str) -> None:
    raw = (b"MSH|^~\\&|RIS|HOSP|RADSCHED|RAD|20260301120000||ORM^O01|O1|P|2.5\r"
           b"PID|1||M1^^^HOSP^MR||DOE^JANE\rORC|NW|ORD1\rOBR|1|ORD1||74177^CT^CPT\r")
    ex = await channel.send(raw)
    assert ex.outcome is Outcome.ACCEPTED and "conflicts" not in ex.data


async def test_ai_review_is_queued_only_with_the_claude_service(store: Store, db_url: str) -> None:
    await Channel(store).send(siu(control="C1", filler="A1", mrn="M1"))
    assert await outbox_rows(db_url, "SELECT * FROM outbox") == []
    analyzer = ClaudeAnalyzer(ClaudeSettings(api_key="k", base_url="http://127.0.0.1:9"))
    try:
        channel = Channel(store, services={"claude": analyzer})
        await channel.send(siu(control="C2", filler="A2", mrn="M2"))
        raw = siu(control="C3", filler="A3", mrn="M3", start="20260312090000")
        await channel.send(raw)
        await channel.send(raw)                                   # redelivery: no second row
        off = Channel(store, "  - parse\n  - conflict_check: {ai_review: false}\n  - persist\n",
                      services={"claude": analyzer})
        await off.send(siu(control="C4", filler="A4", mrn="M4", start="20260313090000"))
    finally:
        await analyzer.close()
    rows = await outbox_rows(db_url, "SELECT kind, dedupe_key, payload, status FROM outbox ORDER BY id")
    assert [r["kind"] for r in rows] == ["ai_analysis", "ai_analysis"]
    payload = json.loads(rows[0]["payload"])
    assert payload == {"appointment_key": "scheduling|F:A2", "patient_age": 56, "patient_sex": "F",
                       "facility_zone": "UTC"}
    assert "A2" not in rows[0]["dedupe_key"] and "M2" not in rows[0]["dedupe_key"]


async def test_a_reused_control_id_is_left_to_persist(channel: Channel, db_url: str) -> None:
    await channel.send(siu(control="C1", filler="A1", mrn="M1"))
    ex = await channel.send(siu(control="C1", filler="A2", mrn="M2"))     # same MSH-10, other booking
    assert ex.outcome is Outcome.REJECTED and ex.problem.code == 205 and "MSH-10" in ex.problem.text
    assert "conflicts" not in ex.data


async def test_a_held_slot_lock_answers_ar_206(db_url: str) -> None:
    """The booking waits for the slot's lock; past the store's lock_timeout it is AR 206, and the
    same message goes through once the lock is free."""
    from radsched_engine.conflicts.bookings import lock_names
    from radsched_engine.rules import Booking
    from radsched_engine.store.conflicts import lock_ids

    store = await Store.open(db_url, pool_min=1, pool_max=2, command_timeout=1.0)   # lock_timeout 0.5 s
    holder = await store.pool.acquire()
    try:
        channel = Channel(store)
        start = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
        slot = Booking("x", "|", start, start + timedelta(minutes=30), locations=("CT1",))
        tx = holder.transaction()
        await tx.start()
        await holder.execute("SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k",
                             lock_ids(lock_names(slot)))
        raw = siu(control="C1", filler="A1", mrn="M1")
        ex = await channel.send(raw)
        assert ex.outcome is Outcome.RETRY and ex.problem.code == 206 and "slot" in ex.problem.text
        await tx.rollback()
        assert (await channel.send(raw)).outcome is Outcome.ACCEPTED
    finally:
        await store.pool.release(holder)
        await store.close()
