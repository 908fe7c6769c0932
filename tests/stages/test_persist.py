"""The persist stage against real PostgreSQL, through the pipeline runner and the real unit of work."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from radsched_engine.domain.model import NULL, AppointmentEvent, Order, OrderEvent, Patient, Phone, Resource
from radsched_engine.errors import Problem
from radsched_engine.exchange import Exchange, Outcome
from radsched_engine.pipeline import Pipeline, Resources, StageSpec
from radsched_engine.stages.persist import SPEC, PersistOptions, PersistStage
from radsched_engine.store import Store
from radsched_engine.store.appointments import appointment_keys, find_overlapping
from tests.store.helpers import exchange, fetch, journal_rows

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
PATIENT = Patient(mrn="MRN1", authority="HOSP", family_name="Doe", given_name="Jane",
                  phones=(Phone("555-0100", "PRN", "PH"), Phone("555-0199", "PRN", "CP")))
CT1 = Resource(kind="location", code="CT1", text="CT room 1", role="CT")
TECH = Resource(kind="personnel", code="T42", text="Tech Smith")
EXAM = Resource(kind="service", code="CTHEAD", text="CT head w/o contrast", coding_system="LOCAL")


def appt(trigger: str = "S12", filler: str | None = "F1", placer: str | None = "P1", **kw: Any
         ) -> AppointmentEvent:
    base: dict[str, Any] = dict(
        trigger=trigger, placer_id=placer, filler_id=filler, start=T0,
        duration=timedelta(minutes=30), patient=PATIENT, services=(EXAM,), locations=(CT1,),
        personnel=(TECH,), event_time=T0 - timedelta(days=1))
    if trigger not in ("S12", "S13", "S14"):
        base.update(start=None, duration=None, services=(), locations=(), personnel=())
    base.update(kw)
    return AppointmentEvent(**base)


class Harness:
    """A channel's transactional part: the persist stage inside the store's unit of work."""

    def __init__(self, store: Store, channel: str = "scheduling") -> None:
        settings = SimpleNamespace(name=channel, tz=UTC)
        stage = PersistStage(PersistOptions(), Resources(channel=channel, settings=settings, store=store))
        self.pipeline = Pipeline(channel, [(SPEC, stage)], store.unit_of_work(channel))
        self.channel = channel
        self.count = 0

    def exchange(self, event: Any, control_id: str | None = None, *, when: str = "20250101120000",
                 raw: bytes | None = None) -> Exchange:
        self.count += 1
        control_id = control_id or f"MSG{self.count:05d}"
        kind = "SIU^S12^SIU_S12" if isinstance(event, AppointmentEvent) else "ORM^O01"
        if isinstance(event, AppointmentEvent):
            kind = f"SIU^{event.trigger}^SIU_S12"
        body = raw or (f"MSH|^~\\&|RIS|RAD|RADSCHED|HOSP|{when}||{kind}|{control_id}|P|2.5\r"
                       f"NTE|1||{event!r}\r").encode()
        ex = exchange(body, self.channel)
        ex.data["event"] = event
        return ex

    async def run(self, event: Any, control_id: str | None = None, **kw: Any) -> Exchange:
        ex = self.exchange(event, control_id, **kw)
        await self.pipeline.run(ex)
        return ex


@pytest.fixture
def harness(store: Store) -> Harness:
    return Harness(store)


async def appointment_row(url: str, key: str = "scheduling|F:F1") -> dict[str, Any]:
    [row] = await fetch(url, "SELECT * FROM appointments WHERE appointment_key = $1", key)
    return row


async def resources_of(url: str, appointment_id: int) -> list[tuple[Any, ...]]:
    rows = await fetch(url, "SELECT kind, code, start_at, end_at, own_time, active FROM "
                       "appointment_resources WHERE appointment_id = $1 ORDER BY kind, code",
                       appointment_id)
    return [tuple(r.values()) for r in rows]


# -- booking ----------------------------------------------------------------------------------
async def test_s12_books_with_radscheduler_columns(harness: Harness, db_url: str) -> None:
    ex = await harness.run(appt(notes="bring prior films", referring_physician="Dr House",
                                priority="S", placer_order_numbers=("ORD1",)))
    assert ex.outcome is Outcome.ACCEPTED and ex.problem is None
    row = await appointment_row(db_url)
    assert {k: row[k] for k in ("patient_id", "patient_name", "patient_phone", "modality",
                                "study_type", "datetime", "duration", "status",
                                "referring_physician", "urgency", "notes", "source")} == {
        "patient_id": "MRN1", "patient_name": "Jane Doe", "patient_phone": "555-0199",
        "modality": "CT", "study_type": "CT head w/o contrast", "datetime": T0, "duration": 30,
        "status": "SCHEDULED", "referring_physician": "Dr House", "urgency": "stat",
        "notes": "bring prior films", "source": "hl7"}
    assert row["end_at"] == T0 + timedelta(minutes=30)
    assert (row["patient_key"], row["placer_id"], row["filler_id"]) == ("HOSP|MRN1", "P1", "F1")
    assert row["alt_key"] == "scheduling|P:P1" and row["order_refs"] == ["P:ORD1"]
    assert row["conflicts"] is None and row["created_at"] is not None
    end = T0 + timedelta(minutes=30)
    assert await resources_of(db_url, row["id"]) == [
        ("location", "CT1", T0, end, False, True), ("personnel", "T42", T0, end, False, True),
        ("service", "CTHEAD", T0, end, False, True)]
    assert ex.data["appointment_id"] == row["id"] and ex.data["appointment"]["status"] == "SCHEDULED"
    assert ex.data["persist_result"] == "applied"
    [journal] = await journal_rows(db_url)
    assert journal["id"] == ex.journal_id == row["last_message_id"]
    assert (journal["outcome"], journal["ack_code"], journal["appointment_id"]) == (
        "accepted", "AA", row["id"])
    assert journal["raw"] == ex.raw


async def test_s12_without_duration_uses_the_default(harness: Harness, db_url: str) -> None:
    await harness.run(appt(duration=None))
    row = await appointment_row(db_url)
    assert row["duration"] == 30 and row["end_at"] == T0 + timedelta(minutes=30)


async def test_s12_for_an_active_appointment_is_205(harness: Harness, db_url: str) -> None:
    await harness.run(appt())
    ex = await harness.run(appt(notes="other"))
    assert ex.outcome is Outcome.REJECTED and ex.problem.code == 205
    assert (await appointment_row(db_url))["notes"] is None
    rows = await journal_rows(db_url)
    assert [(r["outcome"], r["ack_code"], r["error_code"]) for r in rows] == [
        ("accepted", "AA", None), ("rejected", "AE", 205)]


async def test_s12_without_start_is_101(harness: Harness, db_url: str) -> None:
    ex = await harness.run(appt(start=None))
    assert ex.outcome is Outcome.REJECTED and ex.problem.code == 101
    assert await fetch(db_url, "SELECT * FROM appointments") == []


async def test_conflict_findings_are_stored(harness: Harness, db_url: str) -> None:
    ex = harness.exchange(appt())
    ex.data["conflicts"] = [{"rule": "resource_double_booked", "severity": "warning",
                             "with": 7, "at": T0}]
    await harness.pipeline.run(ex)
    row = await appointment_row(db_url)
    assert json.loads(row["conflicts"]) == [
        {"rule": "resource_double_booked", "severity": "warning", "with": 7, "at": T0.isoformat()}]


class _Findings:
    """A transactional stage before persist that sets the findings inside the transaction (as
    conflict_check does for an update), after persist prepared its statement."""

    def __init__(self, value: list[dict[str, Any]]) -> None:
        self.value = value

    async def __call__(self, ex: Exchange) -> None:
        ex.data["conflicts"] = self.value
        ex.warnings.append(Problem(0, "noted in the transaction", None, "W"))


async def test_persist_prepares_its_statement_and_rebuilds_it_when_its_inputs_change(
        store: Store, db_url: str) -> None:
    settings = SimpleNamespace(name="scheduling", tz=UTC)
    stage = PersistStage(PersistOptions(), Resources(channel="scheduling", settings=settings, store=store))
    # prepared before the transaction: the statement is built from the message alone
    ex = Harness(store).exchange(appt())
    stage.prepare(ex)
    assert ex.data["persist_call"][3].apply[4] == ["scheduling|F:F1", "scheduling|P:P1"]
    # a stage in the transaction changes the findings and adds a warning: persist builds the
    # statement again, so the row and the journal carry what the transaction decided
    finding = {"rule": "RES-ROOM-OVERLAP", "severity": "warn", "message": "room taken"}
    spec = StageSpec("findings", "test", object, lambda *_: None, transactional=True)
    pipeline = Pipeline("scheduling", [(spec, _Findings([finding])), (SPEC, stage)],
                        store.unit_of_work("scheduling"))
    ex = Harness(store).exchange(appt())
    await pipeline.run(ex)
    assert ex.outcome == Outcome.ACCEPTED and "persist_call" in ex.data
    row = await appointment_row(db_url)
    assert json.loads(row["conflicts"]) == [finding]
    [journal] = await journal_rows(db_url)
    assert json.loads(journal["warnings"]) == [
        {"code": 0, "text": "noted in the transaction", "severity": "W", "location": None}]


# -- redelivery -------------------------------------------------------------------------------
async def test_redelivery_is_a_duplicate_and_changes_nothing(harness: Harness, db_url: str) -> None:
    first = await harness.run(appt(), "SAME1")
    before = await appointment_row(db_url)
    again = await harness.run(appt(), "SAME1", raw=first.raw)
    assert again.outcome is Outcome.DUPLICATE and again.replay_ack_code == "AA"
    assert again.data["persist_result"] == "duplicate"
    assert await appointment_row(db_url) == before
    rows = await journal_rows(db_url)
    assert [(r["outcome"], r["ack_code"]) for r in rows] == [("accepted", "AA"), ("duplicate", "AA")]
    assert rows[1]["raw"] == first.raw and again.journal_id == rows[1]["id"]


async def test_resend_with_new_msh7_and_lf_is_still_a_duplicate(harness: Harness, db_url: str) -> None:
    first = await harness.run(appt(), "SAME2")
    raw = first.raw.replace(b"20250101120000", b"20250101130500").replace(b"\r", b"\r\n")
    again = await harness.run(appt(), "SAME2", raw=raw)
    assert again.outcome is Outcome.DUPLICATE


async def test_same_control_id_with_other_content_is_205(harness: Harness, db_url: str) -> None:
    await harness.run(appt(), "SAME3")
    other = await harness.run(appt("S14", notes="changed"), "SAME3")
    assert other.outcome is Outcome.REJECTED and other.problem.code == 205
    assert str(other.problem.location) == "MSH-10"
    assert (await appointment_row(db_url))["notes"] is None


async def test_a_rejected_control_id_may_be_sent_again(harness: Harness, db_url: str) -> None:
    bad = await harness.run(appt("S14"), "RETRY1")
    assert bad.problem.code == 204
    await harness.run(appt())
    good = await harness.run(appt("S14", notes="now"), "RETRY1")
    assert good.outcome is Outcome.ACCEPTED


async def test_concurrent_redelivery_applies_once(store: Store, db_url: str) -> None:
    harnesses = [Harness(store), Harness(store)]
    exchanges = [h.exchange(appt(), "RACE1") for h in harnesses]
    exchanges[1] = harnesses[1].exchange(appt(), "RACE1", raw=exchanges[0].raw)
    await asyncio.gather(*(h.pipeline.run(ex) for h, ex in zip(harnesses, exchanges, strict=True)))
    assert sorted(ex.outcome.value for ex in exchanges) == ["accepted", "duplicate"]
    assert len(await fetch(db_url, "SELECT * FROM appointments")) == 1


async def test_concurrent_bookings_of_one_key_book_once(store: Store, db_url: str) -> None:
    h1, h2 = Harness(store), Harness(store)
    a, b = h1.exchange(appt(), "B1"), h2.exchange(appt(notes="x"), "B2")
    await asyncio.gather(h1.pipeline.run(a), h2.pipeline.run(b))
    assert sorted((ex.outcome.value, ex.problem.code if ex.problem else 0) for ex in (a, b)) == [
        ("accepted", 0), ("rejected", 205)]


# -- updates ----------------------------------------------------------------------------------
async def test_s13_reschedules_and_resources_follow(harness: Harness, db_url: str) -> None:
    own = dataclasses.replace(TECH, start=T0 + timedelta(minutes=5), duration=timedelta(minutes=10))
    await harness.run(appt(personnel=(own,)))
    later = T0 + timedelta(days=1, hours=2)
    ex = await harness.run(appt("S13", start=later, duration=None, locations=(), personnel=(),
                                services=(), patient=None, event_time=T0))
    assert ex.outcome is Outcome.ACCEPTED
    row = await appointment_row(db_url)
    assert (row["datetime"], row["end_at"], row["duration"]) == (later, later + timedelta(minutes=30), 30)
    assert row["patient_name"] == "Jane Doe" and row["last_trigger"] == "S13"
    assert await resources_of(db_url, row["id"]) == [
        ("location", "CT1", later, later + timedelta(minutes=30), False, True),
        ("personnel", "T42", later + timedelta(minutes=5), later + timedelta(minutes=15), True, True),
        ("service", "CTHEAD", later, later + timedelta(minutes=30), False, True)]


async def test_s14_changes_only_what_is_sent(harness: Harness, db_url: str) -> None:
    await harness.run(appt(notes="first", referring_physician="Dr A", priority="S"))
    mri = Resource(kind="location", code="MR2", text="MRI 2", action="A")
    gone = dataclasses.replace(TECH, action="D")
    await harness.run(appt("S14", start=None, duration=None, patient=None, services=(),
                           locations=(mri,), personnel=(gone,), notes="second",
                           referring_physician="", event_time=T0))
    row = await appointment_row(db_url)
    assert (row["notes"], row["referring_physician"], row["urgency"]) == ("second", "Dr A", "stat")
    assert (row["datetime"], row["patient_name"], row["status"]) == (T0, "Jane Doe", "SCHEDULED")
    kinds = [(k, c) for k, c, *_ in await resources_of(db_url, row["id"])]
    assert kinds == [("location", "CT1"), ("location", "MR2"), ("service", "CTHEAD")]
    await harness.run(appt("S14", start=None, duration=None, patient=None, services=(),
                           locations=(), personnel=(), notes=NULL, event_time=T0))
    assert (await appointment_row(db_url))["notes"] is None


async def test_s14_with_new_time_and_status_from_sch25(harness: Harness, db_url: str) -> None:
    await harness.run(appt())
    ex = await harness.run(appt("S14", start=T0 + timedelta(hours=1), duration=timedelta(minutes=45),
                                status_raw="Complete", event_time=T0))
    row = await appointment_row(db_url)
    assert (row["status"], row["status_raw"], row["duration"]) == ("COMPLETED", "Complete", 45)
    assert ex.data["appointment"]["status"] == "COMPLETED"


@pytest.mark.parametrize(("trigger", "status_raw", "status"), [
    ("S15", "", "CANCELLED"), ("S15", "NOSHOW", "NO_SHOW"), ("S15", "Booked", "CANCELLED"),
    ("S16", "", "DISCONTINUED"), ("S17", "", "DELETED"), ("S26", "", "NO_SHOW")])
async def test_status_triggers_keep_the_row(harness: Harness, db_url: str, trigger: str,
                                            status_raw: str, status: str) -> None:
    await harness.run(appt())
    ex = await harness.run(appt(trigger, status_raw=status_raw, reason="patient request",
                                event_time=T0))
    assert ex.outcome is Outcome.ACCEPTED
    row = await appointment_row(db_url)
    assert (row["status"], row["active"], row["reason"]) == (status, False, "patient request")
    assert row["datetime"] == T0 and row["patient_name"] == "Jane Doe"
    assert all(not active for *_, active in await resources_of(db_url, row["id"]))


@pytest.mark.parametrize("trigger", ["S13", "S14", "S15", "S17", "S26"])
async def test_unknown_appointment_is_204(harness: Harness, db_url: str, trigger: str) -> None:
    ex = await harness.run(appt(trigger, filler="NOPE", placer=None))
    assert ex.outcome is Outcome.REJECTED and ex.problem.code == 204
    assert "NOPE" not in ex.problem.text                 # texts reach the log: no ids
    placer_only = await harness.run(appt(trigger, filler=None, placer="NOPE"))
    assert str(placer_only.problem.location) == "SCH-1"
    rows = await journal_rows(db_url)
    assert [(r["outcome"], r["error_code"], r["error_location"]) for r in rows] == [
        ("rejected", 204, "SCH-2"), ("rejected", 204, "SCH-1")]


async def test_out_of_order_s14_is_ignored_as_stale(harness: Harness, db_url: str) -> None:
    await harness.run(appt())
    newer = await harness.run(appt("S14", notes="newer", event_time=T0 + timedelta(hours=2)))
    older = await harness.run(appt("S14", notes="older", event_time=T0 + timedelta(hours=1)))
    assert newer.outcome is Outcome.ACCEPTED and older.outcome is Outcome.ACCEPTED
    assert older.data["persist_result"] == "stale"
    assert [w.severity for w in older.warnings] == ["W"] and "out-of-order" in older.warnings[0].text
    row = await appointment_row(db_url)
    assert row["notes"] == "newer" and row["last_event_time"] == T0 + timedelta(hours=2)
    rows = await journal_rows(db_url)
    assert rows[-1]["outcome"] == "accepted" and rows[-1]["id"] == older.journal_id
    assert "out-of-order" in json.loads(rows[-1]["warnings"])[0]["text"]
    # a late cancel older than the stored state is ignored too; a newer one applies
    await harness.run(appt("S15", event_time=T0))
    assert (await appointment_row(db_url))["status"] == "SCHEDULED"
    await harness.run(appt("S15", event_time=T0 + timedelta(hours=3)))
    assert (await appointment_row(db_url))["status"] == "CANCELLED"


async def test_cancelled_then_rebooked(harness: Harness, db_url: str) -> None:
    await harness.run(appt())
    await harness.run(appt("S15", event_time=T0))
    # the freed slot can be taken by another appointment ...
    other = await harness.run(appt(filler="F2", placer="P2", patient=dataclasses.replace(
        PATIENT, mrn="MRN2"), event_time=T0))
    assert other.outcome is Outcome.ACCEPTED
    # ... and the cancelled one can be booked again under its own id
    again = await harness.run(appt(notes="rebooked", event_time=T0 + timedelta(hours=1)))
    assert again.outcome is Outcome.ACCEPTED
    row = await appointment_row(db_url)
    assert (row["status"], row["notes"], row["active"]) == ("SCHEDULED", "rebooked", True)
    assert all(active for *_, active in await resources_of(db_url, row["id"]))
    assert len(await fetch(db_url, "SELECT id FROM appointments")) == 2


async def test_placer_only_booking_is_found_by_either_id(harness: Harness, db_url: str) -> None:
    await harness.run(appt(filler=None, placer="PL9"))
    ex = await harness.run(appt("S14", filler="FI9", placer="PL9", notes="with filler", event_time=T0))
    assert ex.outcome is Outcome.ACCEPTED
    row = await appointment_row(db_url, "scheduling|P:PL9")
    assert (row["alt_key"], row["filler_id"], row["notes"]) == ("scheduling|F:FI9", "FI9", "with filler")
    ex = await harness.run(appt("S15", filler="FI9", placer=None, event_time=T0))
    assert ex.outcome is Outcome.ACCEPTED
    assert (await appointment_row(db_url, "scheduling|P:PL9"))["status"] == "CANCELLED"


async def test_channels_are_separate_namespaces(store: Store, db_url: str) -> None:
    a, b = Harness(store, "north"), Harness(store, "south")
    assert (await a.run(appt())).outcome is Outcome.ACCEPTED
    assert (await b.run(appt())).outcome is Outcome.ACCEPTED
    keys = [r["appointment_key"] for r in await fetch(
        db_url, "SELECT appointment_key FROM appointments ORDER BY 1")]
    assert keys == ["north|F:F1", "south|F:F1"]


async def test_find_overlapping_sees_booked_and_not_cancelled(harness: Harness, store: Store) -> None:
    await harness.run(appt())
    event = appt(filler="F2", placer=None)
    async with store.connection() as conn:
        found = await find_overlapping(conn, locations=["CT1"], personnel=["T42"],
                                       patient_key="HOSP|MRN1", start=T0 + timedelta(minutes=29),
                                       end=T0 + timedelta(hours=1),
                                       exclude_key=appointment_keys("scheduling", event))
        assert sorted(r["match"] for r in found) == ["location", "patient", "personnel"]
        mine = await find_overlapping(conn, locations=["CT1"], start=T0, end=T0 + timedelta(hours=1),
                                      exclude_key=appointment_keys("scheduling", appt()))
        assert mine == []
    await harness.run(appt("S15", event_time=T0))
    async with store.connection() as conn:
        assert await find_overlapping(conn, locations=["CT1"], patient_key="HOSP|MRN1",
                                      start=T0, end=T0 + timedelta(hours=1)) == []


# -- orders -----------------------------------------------------------------------------------
def order(control: str = "NW", placer: str | None = "ORD1", filler: str | None = None, **kw: Any
          ) -> OrderEvent:
    fields: dict[str, Any] = dict(control=control, placer_order_number=placer,
                                  filler_order_number=filler, procedure_code="CTHEAD",
                                  procedure_text="CT head", modality="CT")
    event_time = kw.pop("event_time", T0 - timedelta(days=2))
    patient = kw.pop("patient", PATIENT)
    fields.update(kw)
    return OrderEvent(patient=patient, orders=(Order(**fields),), event_time=event_time)


async def order_row(url: str, placer: str = "ORD1") -> dict[str, Any]:
    [row] = await fetch(url, "SELECT * FROM orders WHERE placer_order_number = $1", placer)
    return row


async def test_order_new_update_cancel(harness: Harness, db_url: str) -> None:
    ex = await harness.run(order(priority="S", reason="headache"))
    assert ex.outcome is Outcome.ACCEPTED
    row = await order_row(db_url)
    assert (row["status"], row["control"], row["urgency"], row["patient_name"], row["modality"]) == (
        "NEW", "NW", "stat", "Jane Doe", "CT")
    assert ex.data["order_ids"] == [row["id"]]
    await harness.run(order("XO", filler="ACC1", accession="ACC1", status="SC",
                            event_time=T0 - timedelta(days=1)))
    row = await order_row(db_url)
    assert (row["status"], row["filler_order_number"], row["accession"], row["reason"]) == (
        "SCHEDULED", "ACC1", "ACC1", "headache")
    await harness.run(order("CA", placer=None, filler="ACC1", event_time=T0))
    assert (await order_row(db_url))["status"] == "CANCELLED"
    rows = await journal_rows(db_url)
    assert [r["outcome"] for r in rows] == ["accepted"] * 3 and rows[0]["id"] == ex.journal_id


async def test_order_hold_and_release(harness: Harness, db_url: str) -> None:
    await harness.run(order(status="SC"))
    await harness.run(order("HD", event_time=T0 - timedelta(days=1)))
    assert ((await order_row(db_url))["status"], (await order_row(db_url))["held_from_status"]) == (
        "HOLD", "SCHEDULED")
    await harness.run(order("RL", event_time=T0))
    row = await order_row(db_url)
    assert (row["status"], row["held_from_status"]) == ("SCHEDULED", None)


async def test_order_repeated_nw_updates_and_clash_is_205(harness: Harness, db_url: str) -> None:
    await harness.run(order())
    again = await harness.run(order(procedure_text="CT head plain"))
    assert again.outcome is Outcome.ACCEPTED
    assert (await order_row(db_url))["procedure_text"] == "CT head plain"
    clash = await harness.run(order(patient=dataclasses.replace(PATIENT, mrn="OTHER")))
    assert clash.outcome is Outcome.REJECTED and clash.problem.code == 205


async def test_order_errors(harness: Harness, db_url: str) -> None:
    unknown = await harness.run(order("XO", placer="NOPE"))
    assert (unknown.outcome, unknown.problem.code, str(unknown.problem.location)) == (
        Outcome.REJECTED, 204, "ORC-2")
    bad = await harness.run(order("ZZ"))
    assert (bad.problem.code, str(bad.problem.location)) == (103, "ORC-1")
    none = await harness.run(order(placer=None, filler=None))
    assert none.problem.code == 101
    assert await fetch(db_url, "SELECT * FROM orders") == []


async def test_stale_order_update_is_ignored(harness: Harness, db_url: str) -> None:
    await harness.run(order(event_time=T0))
    ex = await harness.run(order("CA", event_time=T0 - timedelta(hours=1)))
    assert ex.outcome is Outcome.ACCEPTED and "out-of-order" in ex.warnings[0].text
    assert (await order_row(db_url))["status"] == "NEW"


async def test_orders_and_appointments_link_either_way(harness: Harness, db_url: str) -> None:
    await harness.run(order(placer="ORD7", modality="MR"))
    await harness.run(appt(placer_order_numbers=("ORD7",), locations=(), general=()))
    row = await appointment_row(db_url)
    assert (await order_row(db_url, "ORD7"))["appointment_id"] == row["id"]
    assert row["modality"] == "MR"                  # taken from the order: SIU named none
    await harness.run(appt(filler="F5", placer="P5", filler_order_numbers=("ACC5",)))
    await harness.run(order(placer="ORD8", filler="ACC5"))
    linked = await order_row(db_url, "ORD8")
    assert linked["appointment_id"] == (await appointment_row(db_url, "scheduling|F:F5"))["id"]


async def test_order_redelivery_is_a_duplicate(harness: Harness, db_url: str) -> None:
    first = await harness.run(order(), "ORM1")
    again = await harness.run(order(), "ORM1", raw=first.raw)
    assert again.outcome is Outcome.DUPLICATE and again.replay_ack_code == "AA"
    assert len(await fetch(db_url, "SELECT * FROM orders")) == 1


# -- the public sample corpus, parsed for real ------------------------------------------------
SAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "hl7-samples"


def corpus(pattern: str) -> list[Path]:
    if not SAMPLES.is_dir():
        pytest.skip(f"sample corpus not found at {SAMPLES}")
    return sorted(SAMPLES.glob(pattern))


def real_pipeline(store: Store, channel: str) -> Pipeline:
    from radsched_engine.stages import parse

    settings = SimpleNamespace(name=channel, tz=UTC)
    resources = Resources(channel=channel, settings=settings, store=store)
    steps = [(spec, spec.factory(spec.options(), resources)) for spec in (parse.SPEC, SPEC)]
    return Pipeline(channel, steps, store.unit_of_work(channel))


async def test_every_sample_gets_a_clear_answer_and_a_journal_row(store: Store, db_url: str) -> None:
    files = [p for p in corpus("*.hl7") if p.name.split("_")[0] in ("siu", "orm", "omi")]
    assert files
    answers = {}
    for path in files:
        ex = exchange(path.read_bytes(), channel=path.stem)
        await real_pipeline(store, path.stem).run(ex)
        assert ex.outcome not in (Outcome.ERROR, Outcome.RETRY), (path.name, ex.problem)
        if ex.outcome is Outcome.REJECTED:
            assert ex.problem is not None and 100 <= ex.problem.code <= 206, path.name
        answers[path.name] = ex.outcome
    rows = await journal_rows(db_url)
    assert sorted(r["channel"] for r in rows) == sorted(p.stem for p in files)
    assert all(r["raw"] == (SAMPLES / f"{r['channel']}.hl7").read_bytes() for r in rows)
    assert answers["siu_s12_gmed_no_sch_1.hl7"] is Outcome.REJECTED
    assert answers["siu_s12_rimiti_1.hl7"] is Outcome.ACCEPTED
    assert answers["orm_o01_mieweb_1.hl7"] is Outcome.ACCEPTED


def _with_control_id(raw: bytes, control_id: str) -> bytes:
    first, _, rest = raw.partition(b"\r")
    fields = first.split(b"|")
    fields[9] = control_id.encode()
    return b"|".join(fields) + b"\r" + rest


async def test_clicrdv_lifecycle_from_the_corpus(store: Store, db_url: str) -> None:
    pipeline = real_pipeline(store, "clicrdv")
    expected = [("s12", "SCHEDULED"), ("s13", "SCHEDULED"), ("s14", "SCHEDULED"),
                ("s15", "CANCELLED"), ("s26", "NO_SHOW"), ("s17", "DELETED")]
    for n, (trigger, status) in enumerate(expected):
        [path] = corpus(f"siu_{trigger}_rimiti_1.hl7")
        ex = exchange(_with_control_id(path.read_bytes(), f"CLIC{n}"), channel="clicrdv")
        await pipeline.run(ex)
        assert ex.outcome is Outcome.ACCEPTED, (trigger, ex.problem)
        row = await appointment_row(db_url, "clicrdv|F:49849903800")
        assert row["status"] == status, trigger
    # the files themselves reuse one MSH-10 for S12, S13 and S14: the second is refused (205)
    ex1 = exchange(corpus("siu_s12_rimiti_1.hl7")[0].read_bytes(), channel="raw")
    ex2 = exchange(corpus("siu_s13_rimiti_1.hl7")[0].read_bytes(), channel="raw")
    await real_pipeline(store, "raw").run(ex1)
    await real_pipeline(store, "raw").run(ex2)
    assert (ex1.outcome, ex2.outcome, ex2.problem.code) == (Outcome.ACCEPTED, Outcome.REJECTED, 205)


async def test_a_locked_record_is_ar_206_and_journaled(db_url: str) -> None:
    store = await Store.open(db_url, pool_min=1, pool_max=2, lock_timeout=0.2)
    try:
        harness = Harness(store)
        await harness.run(appt())
        async with store.connection() as other, other.transaction():
            await other.execute("SELECT 1 FROM appointments WHERE appointment_key = $1 FOR UPDATE",
                                "scheduling|F:F1")
            ex = await harness.run(appt("S14", notes="blocked"))
        assert ex.outcome is Outcome.RETRY and ex.problem.code == 206
        rows = await journal_rows(db_url)
        assert (rows[-1]["outcome"], rows[-1]["ack_code"], rows[-1]["error_code"]) == ("retry", "AR", 206)
        again = await harness.run(appt("S14", notes="blocked"), ex.control_id or None, raw=ex.raw)
        assert again.outcome is Outcome.ACCEPTED                 # the resend goes through
        assert (await appointment_row(db_url))["notes"] == "blocked"
    finally:
        await store.close()


async def test_warnings_added_after_persist_reach_the_journal_row(store: Store, db_url: str) -> None:
    from radsched_engine.errors import Problem
    from radsched_engine.pipeline import StageSpec

    class Later:
        async def __call__(self, ex: Exchange) -> None:
            ex.warnings.append(Problem(0, "note from a later stage", None, "W"))

    settings = SimpleNamespace(name="scheduling", tz=UTC)
    persist = PersistStage(PersistOptions(), Resources(channel="scheduling", settings=settings))
    later = StageSpec("later", "test", object, lambda o, r: Later(), transactional=True)
    pipeline = Pipeline("scheduling", [(SPEC, persist), (later, Later())],
                        store.unit_of_work("scheduling"))
    ex = Harness(store).exchange(appt())
    await pipeline.run(ex)
    assert ex.outcome is Outcome.ACCEPTED
    [row] = await journal_rows(db_url)
    assert row["id"] == ex.journal_id
    assert [w["text"] for w in json.loads(row["warnings"])] == ["note from a later stage"]
