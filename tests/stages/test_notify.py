"""The notify stage: which events queue a text, what the row holds, all inside the persist transaction."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from radsched_engine.config import ConfigError
from radsched_engine.config.schema import parse_options
from radsched_engine.exchange import Exchange, Outcome
from radsched_engine.notify.compose import FACTS, PROFILE, composed
from radsched_engine.pipeline import Pipeline, Resources
from radsched_engine.stages import notify, parse, persist
from radsched_engine.stages.notify import NotifyOptions
from radsched_engine.store import Store
from tests.notify.messages import CELL, FACILITY, HOME, local_start, siu
from tests.store.helpers import outbox_rows

CHANNEL = "scheduling"


class Channel:
    """parse → persist → notify with the real unit of work, started (``Pipeline.start``) before
    its first message as the engine starts it (``start=False``: never started)."""

    def __init__(self, store: Store, options: NotifyOptions | None = None, *, start: bool = True) -> None:
        settings = SimpleNamespace(name=CHANNEL, tz=FACILITY, timezone="America/New_York")
        res = Resources(channel=CHANNEL, settings=settings, store=store)
        self.stage = notify.SPEC.factory(options or NotifyOptions(), res)
        steps = [(parse.SPEC, parse.SPEC.factory(parse.ParseOptions(), res)),
                 (persist.SPEC, persist.SPEC.factory(persist.PersistOptions(), res)),
                 (notify.SPEC, self.stage)]
        self.pipeline = Pipeline(CHANNEL, steps, store.unit_of_work(CHANNEL))
        self.to_start = start

    async def send(self, raw: bytes) -> Exchange:
        if self.to_start:
            await self.pipeline.start()
            self.to_start = False
        ex = Exchange(raw=raw, channel=CHANNEL, peer="127.0.0.1:1", received_at=datetime.now(UTC))
        await self.pipeline.run(ex)
        return ex


async def outbox(db_url: str, *, raw: bool = False) -> list[dict[str, Any]]:
    """The outbox rows; their payloads as the worker composes them at the first claim (``raw``: as
    the stage stored them, the text's facts)."""
    import json

    found = await outbox_rows(db_url, "SELECT * FROM outbox ORDER BY id")
    settings = await profiles(db_url)
    for row in found:
        row["payload"] = json.loads(row["payload"])
        if not raw:
            assert FACTS in row["payload"] and "body" not in row["payload"]
            row["payload"] = composed(row["payload"], settings.get(row["payload"].get(PROFILE)))
    return found


async def profiles(db_url: str) -> dict[str, dict[str, Any]]:
    """The stored notify profiles: id → settings."""
    import json

    return {r["id"]: json.loads(r["settings"])
            for r in await outbox_rows(db_url, "SELECT id, settings FROM notify_profiles")}


async def test_s12_queues_one_text_with_number_body_and_keys(store: Store, db_url: str) -> None:
    start = local_start(days=5, hour=8, minute=15)
    ex = await Channel(store).send(siu("S12", "M1", start=start))
    assert ex.outcome is Outcome.ACCEPTED
    [row] = await outbox(db_url)
    appointment_id = ex.data["appointment_id"]
    assert row["kind"] == "sms" and row["status"] == "pending" and row["appointment_id"] == appointment_id
    assert row["dedupe_key"] == f"sms:{appointment_id}:S12:{ex.journal_id}"
    p = row["payload"]
    when = start.strftime("%a %d %b 08:15")
    assert p["to"] == "+16175550123" and p["skip"] is None and p["event"] == "S12"
    assert p["body"] == (f"RadScheduler: your CT ABDOMEN AND PELVIS WITH CONTRAST is booked for {when} "
                         "at CT Scanner 1. Reply STOP to opt out.")
    patient = hashlib.sha256(f"{CHANNEL}|GENHOSP|MRN1".encode()).hexdigest()[:24]
    assert p["order_key"] == f"sms:{patient}" and p["quiet"] is None
    assert abs((row["next_attempt_at"] - datetime.now(UTC)).total_seconds()) < 60
    # What the stage stored: the text's facts, the number and the words are the worker's to make;
    # the channel's settings are the profile's, stored once, which the row names.
    [stored] = await outbox(db_url, raw=True)
    facts = stored["payload"][FACTS]
    assert facts["phones"] == [["+16175550100", "PRN", "PH"], ["+16175550123", "PRN", "CP"]]
    assert datetime.fromisoformat(facts["start"]) == start and facts["location"] == "CT Scanner 1"
    assert not {"tz", "region", "template", "clinic", "time_format"} & facts.keys()
    settings = (await profiles(db_url))[stored["payload"][PROFILE]]
    assert settings["tz"] == "America/New_York" and settings["region"] == "US"
    assert settings["templates"]["S12"] == notify.DEFAULT_TEMPLATES["S12"]


async def test_redelivery_and_stale_updates_queue_nothing_more(store: Store, db_url: str) -> None:
    channel = Channel(store)
    message = siu("S12", "M1")
    await channel.send(message)
    again = await channel.send(message)
    assert again.outcome is Outcome.DUPLICATE
    newer = datetime.now(FACILITY)
    await channel.send(siu("S13", "M2", start=local_start(days=6), sent=newer))
    stale = await channel.send(siu("S13", "M3", start=local_start(days=7), sent=newer - timedelta(hours=1)))
    assert stale.outcome is Outcome.ACCEPTED and stale.data["persist_result"] == "stale"
    assert [r["payload"]["event"] for r in await outbox(db_url)] == ["S12", "S13"]


async def test_default_events_s12_s13_s15_and_not_s14(store: Store, db_url: str) -> None:
    channel = Channel(store)
    start = local_start(days=3)
    await channel.send(siu("S12", "M1", start=start))
    await channel.send(siu("S14", "M2", start=start))
    await channel.send(siu("S13", "M3", start=start + timedelta(hours=2)))
    await channel.send(siu("S15", "M4", start=start))
    rows = await outbox(db_url)
    assert [r["payload"]["event"] for r in rows] == ["S12", "S13", "S15"]
    assert "has moved to" in rows[1]["payload"]["body"]
    assert (start + timedelta(hours=2)).strftime("%H:%M") in rows[1]["payload"]["body"]
    assert "is cancelled" in rows[2]["payload"]["body"]
    assert len({r["payload"]["order_key"] for r in rows}) == 1     # one patient, one queue


async def test_configured_events_and_templates(store: Store, db_url: str) -> None:
    options = parse_options(NotifyOptions, """
events: [S14]
clinic: Springfield Imaging
templates:
  S14: "{clinic}: {exam} on {date} at {time}{at_location} changed."
""")
    channel = Channel(store, options)
    start = local_start(days=3, hour=16, minute=5)
    await channel.send(siu("S12", "M1", start=start))
    await channel.send(siu("S14", "M2", start=start))
    [row] = await outbox(db_url)
    assert row["payload"]["body"] == (f"Springfield Imaging: CT ABDOMEN AND PELVIS WITH CONTRAST on "
                                      f"{start.strftime('%a %d %b')} at 16:05 at CT Scanner 1 changed.")


async def test_rejected_orders_and_inactive_events_queue_nothing(store: Store, db_url: str) -> None:
    channel = Channel(store, NotifyOptions(events=("S12", "S13", "S14", "S15", "S17")))
    unknown = await channel.send(siu("S15", "M1", filler="NOPE", placer="NOPE"))
    assert unknown.outcome is Outcome.REJECTED
    await channel.send(siu("S12", "M2"))
    again = await channel.send(siu("S12", "M3"))            # already booked: AE 205, rolled back
    assert again.outcome is Outcome.REJECTED
    order = (b"MSH|^~\\&|RIS|GENHOSP|RADSCHED|RADIOLOGY|20261201083000||ORM^O01|O1|P|2.5.1\r"
             b"PID|1||MRN1^^^GENHOSP^MR||TESTPATIENT^JANE||19800415|F|||||^PRN^CP^^1^617^5550123\r"
             b"ORC|NW|ORD1|||SC\rOBR|1|ORD1||74177^CT ABD PELVIS W CONTRAST^CPT\r")
    assert (await channel.send(order)).outcome is Outcome.ACCEPTED
    # An S13 that leaves the appointment cancelled (SCH-25) is not a "new time" text.
    raw = siu("S13", "M4", start=local_start(days=11)).replace(b"|Booked\r", b"|Cancelled\r")
    await channel.send(raw)
    assert [r["payload"]["event"] for r in await outbox(db_url)] == ["S12"]


async def test_past_appointments_are_not_texted_unless_asked(store: Store, db_url: str) -> None:
    past = local_start(days=-2)
    await Channel(store).send(siu("S12", "M1", start=past, filler="F1"))
    assert await outbox(db_url) == []
    await Channel(store, NotifyOptions(skip_past=False)).send(siu("S12", "M2", start=past, filler="F2"))
    assert len(await outbox(db_url)) == 1


async def test_no_usable_number_is_queued_as_skipped(store: Store, db_url: str) -> None:
    channel = Channel(store)
    await channel.send(siu("S12", "M1", filler="F1", phones="^NET^Internet^jane@example.org"))
    await channel.send(siu("S12", "M2", filler="F2", phones="not a number"))
    rows = await outbox(db_url)
    assert [(r["payload"]["to"], r["payload"]["skip"]) for r in rows] == [(None, "no_number"),
                                                                         (None, "invalid")]


async def test_cell_phone_preferred_and_work_number_only_when_configured(store: Store, db_url: str) -> None:
    work_only = "^WPN^PH^^1^617^5550177"
    await Channel(store).send(siu("S12", "M1", filler="F1", phones=f"{HOME}~{CELL}"))
    await Channel(store).send(siu("S12", "M2", filler="F2", phones=work_only))
    await Channel(store, NotifyOptions(use_business_phone=True)).send(
        siu("S12", "M3", filler="F3", phones=work_only))
    rows = await outbox(db_url)
    assert [r["payload"]["to"] for r in rows] == ["+16175550123", None, "+16175550177"]


async def test_quiet_hours_hold_the_row_until_the_window_ends(store: Store, db_url: str) -> None:
    now = datetime.now(FACILITY)
    start, end = (now - timedelta(hours=1)).strftime("%H:00"), (now + timedelta(hours=2)).strftime("%H:00")
    options = parse_options(NotifyOptions, f'quiet_hours: {{start: "{start}", end: "{end}"}}')
    await Channel(store, options).send(siu("S12", "M1"))
    [row] = await outbox(db_url)
    held = row["next_attempt_at"].astimezone(FACILITY)
    assert held.strftime("%H:%M") == end and held > now
    assert row["payload"]["quiet"] == {"start": start, "end": end, "tz": "America/New_York"}


async def test_prep_from_info_findings_goes_into_the_text(store: Store) -> None:
    stage = notify.NotifyStage(NotifyOptions(), Resources(
        channel=CHANNEL, settings=SimpleNamespace(tz=FACILITY, timezone="America/New_York")))
    ex = await Channel(store).send(siu("S12", "M1"))
    ex.data["conflicts"] = [
        {"rule": "PREP-INSTRUCTIONS", "severity": "info", "message": "Patient preparation for this exam.",
         "details": {"prep": "No food for 4 hours before the exam"}},
        {"rule": "RES-ROOM-OVERLAP", "severity": "warn", "message": "x", "details": {"prep": "ignored"}},
    ]
    payload = composed(stage.payload(ex, ex.data["event"], ex.data["appointment"],
                                     ex.data["appointment"]["datetime"]))
    assert "at CT Scanner 1. Preparation: No food for 4 hours before the exam. Reply STOP" in payload["body"]


@pytest.mark.parametrize(("snippet", "message"), [
    ("events: [S12, S99]", "unknown event(s) S99"),
    ("templates: {S12: 'Hi {name}'}", "unknown placeholder {name}"),
    ("templates: {A01: 'Hi'}", "unknown event 'A01'"),
    ("templates: {S12: 'Hi {'}", "template S12"),
    ("region: XX", "not a region"),
    ("quiet_hours: {start: '9pm'}", "not a time of day"),
    ("quiet_hours: {start: '08:00', end: '08:00'}", "start and end are equal"),
    ("sms: {}", "unknown option 'sms'"),
])
def test_bad_options_are_config_errors(snippet: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_options(NotifyOptions, snippet)
    assert message in str(err.value)


def test_spec_is_transactional_after_persist() -> None:
    assert notify.SPEC.transactional and notify.SPEC.after == ("persist",)
    assert dataclasses.fields(NotifyOptions)


async def test_cancellation_without_phones_uses_the_stored_number(store: Store, db_url: str) -> None:
    channel = Channel(store)
    await channel.send(siu("S12", "M1"))
    await channel.send(siu("S15", "M2", phones=""))
    assert [r["payload"]["to"] for r in await outbox(db_url)] == ["+16175550123", "+16175550123"]


async def test_a_channel_not_started_queues_rows_that_carry_every_fact(store: Store, db_url: str) -> None:
    """Before its channel starts (or with no profile stored) the stage writes self-contained rows;
    composed, they read exactly as a started channel's rows do."""
    start = local_start(days=5, hour=8, minute=15)
    await Channel(store, start=False).send(siu("S12", "M1", start=start))
    await Channel(store).send(siu("S12", "M2", start=start, filler="F2"))
    plain, named = await outbox(db_url, raw=True)
    assert PROFILE not in plain["payload"] and plain["payload"][FACTS]["tz"] == "America/New_York"
    assert PROFILE in named["payload"]
    texts = await outbox(db_url)
    assert texts[0]["payload"]["body"] == texts[1]["payload"]["body"]
    assert texts[0]["payload"]["quiet"] is None and texts[1]["payload"]["quiet"] is None


async def test_settings_are_stored_once_per_configuration(store: Store, db_url: str) -> None:
    await Channel(store).send(siu("S12", "M1"))
    await Channel(store).send(siu("S12", "M2", filler="F2"))      # same settings: same profile
    other = parse_options(NotifyOptions, "clinic: Springfield Imaging")
    await Channel(store, other).send(siu("S12", "M3", filler="F3"))
    stored = await profiles(db_url)
    assert sorted(s["clinic"] for s in stored.values()) == ["RadScheduler", "Springfield Imaging"]
    rows = await outbox(db_url, raw=True)
    assert [r["payload"][PROFILE] for r in rows][:2] == 2 * [rows[0]["payload"][PROFILE]]
    assert rows[2]["payload"][PROFILE] != rows[0]["payload"][PROFILE]


async def test_settings_not_stored_leave_the_rows_carrying_every_fact(store: Store, db_url: str) -> None:
    """The profile only makes rows smaller: an id stored with other settings is not reused, and a
    database that cannot be reached when the channel starts does not stop it."""
    first = Channel(store)
    await first.send(siu("S12", "M1"))
    async with store.connection() as conn:
        await conn.execute("UPDATE notify_profiles SET settings = settings || '{\"clinic\": \"x\"}'")
    clash = Channel(store)
    await clash.send(siu("S12", "M2", filler="F2"))
    closed = await Store.open(db_url, pool_min=1, pool_max=1)
    await closed.close()
    down = Channel(closed)
    await down.pipeline.start()
    assert first.stage.profile is not None and clash.stage.profile is None and down.stage.profile is None
    named, plain = await outbox(db_url, raw=True)
    assert PROFILE in named["payload"] and PROFILE not in plain["payload"]
    assert plain["payload"][FACTS]["clinic"] == "RadScheduler"
