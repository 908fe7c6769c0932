"""Texts queued as facts: the worker picks the number and renders the words at its first claim,
stores them in the row before Twilio is called, and every later attempt uses what the row holds."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from radsched_engine.domain.model import Phone
from radsched_engine.notify.compose import FACTS, PROFILE, compose, own_facts, profile_id, text_facts
from radsched_engine.notify.templates import DEFAULT_TEMPLATES
from radsched_engine.outbox import OutboxRow
from radsched_engine.store import Store
from radsched_engine.store.outbox import enqueue
from tests.fakes.fake_twilio import FakeTwilio
from tests.outbox.helpers import Clock, row

from .helpers import TO, sms_worker

START = datetime(2031, 12, 2, 14, 30, tzinfo=UTC)          # 09:30 in New York
BODY = ("RadScheduler: your CT ABDOMEN is booked for Tue 02 Dec 09:30 at CT Scanner 1. "
        "Reply STOP to opt out.")


def facts(*phones: Phone) -> dict[str, Any]:
    return text_facts(phones, region="US", template=DEFAULT_TEMPLATES["S12"], clinic="RadScheduler",
                      time_format="%a %d %b %H:%M", tz="America/New_York", start=START,
                      exam="CT ABDOMEN", location="CT Scanner 1", prep=())


async def queue(store: Store, key: str, text_facts_: dict[str, Any],
                payload: dict[str, Any] | None = None) -> int:
    payload = payload or {FACTS: text_facts_, "event": "S12", "channel": "scheduling", "quiet": None,
                          "order_key": f"sms:{key}"}
    async with store.connection() as conn, conn.transaction():
        assert await enqueue(conn, "sms", key, payload)
        return await conn.fetchval("SELECT id FROM outbox WHERE dedupe_key = $1", key)


async def drain_one(store: Store, twilio_fake: FakeTwilio, clock: Clock) -> None:
    """A worker against the fake Twilio handles the one row queued, then stops."""
    worker, _ = sms_worker(store, twilio_fake.env(), clock)
    try:
        assert await worker.drain() == 1
    finally:
        await worker.stop()


def payload(got: dict[str, Any]) -> dict[str, Any]:
    return json.loads(got["payload"])


def test_compose_picks_the_mobile_number_and_renders_in_the_facility_zone() -> None:
    home, cell = Phone("^617^5550100", "PRN", "PH"), Phone("(617) 555-0123", "PRN", "CP")
    assert compose(facts(home, cell)) == {"to": TO, "skip": None, "body": BODY}
    assert compose(facts(Phone("jane@example.org", "NET", "Internet"))) == {
        "to": None, "skip": "no_number", "body": BODY}
    assert compose(facts())["skip"] == "no_number"
    assert compose(facts(Phone("not a number")))["skip"] == "invalid"


async def test_text_is_stored_before_the_send_and_an_in_doubt_resend_matches_it(
        store: Store, db_url: str, twilio_fake: FakeTwilio) -> None:
    clock = Clock()
    twilio_fake.force(201, delay=3.0)              # accepted only after our timeout: in doubt
    rid = await queue(store, "k1", facts(Phone("617-555-0123", "PRN", "CP")))
    # 1 s: time enough, on a busy machine, for the request to reach Twilio before we give up.
    worker, _ = sms_worker(store, twilio_fake.env(), clock, timeout=1.0)
    try:
        await worker.drain()
        got = await row(db_url, rid)
        assert got["status"] == "sending" and json.loads(got["result"])["in_doubt"] is True
        stored = payload(got)
        assert FACTS not in stored and (stored["to"], stored["skip"], stored["body"]) == (TO, None, BODY)
        assert stored["order_key"] == "sms:k1" and stored["event"] == "S12"
        async with asyncio.timeout(20):
            while not twilio_fake.sent:
                await asyncio.sleep(0.02)
        clock.advance(3600)
        await worker.drain()
    finally:
        await worker.stop()
    got = await row(db_url, rid)
    assert got["status"] == "sent" and json.loads(got["result"])["reconciled"] is True
    assert [(m["To"], m["Body"]) for m in twilio_fake.sent] == [(TO, BODY)]
    assert len(twilio_fake.creates()) == 1


async def test_no_number_is_skipped_with_its_reason_and_the_text_kept(
        store: Store, db_url: str, twilio_fake: FakeTwilio) -> None:
    clock = Clock()
    rid = await queue(store, "k1", facts(Phone("12", "PRN", "PH")))
    await drain_one(store, twilio_fake, clock)
    got = await row(db_url, rid)
    assert got["status"] == "skipped"
    assert json.loads(got["result"]) == {"reason": "no_phone", "detail": "invalid"}
    assert payload(got)["body"] == BODY and payload(got)["to"] is None
    assert twilio_fake.requests == []


async def test_a_fresh_text_to_an_opted_out_number_is_stored_and_never_sent(
        store: Store, db_url: str, twilio_fake: FakeTwilio) -> None:
    """The statement that stores the composed text also says whether its number opted out."""
    clock = Clock()
    async with store.connection() as conn:
        await conn.execute("INSERT INTO sms_opt_outs (phone) VALUES ($1)", TO)
    rid = await queue(store, "k1", facts(Phone("617-555-0123", "PRN", "CP")))
    await drain_one(store, twilio_fake, clock)
    got = await row(db_url, rid)
    assert (got["status"], json.loads(got["result"])) == ("skipped", {"reason": "opted_out"})
    assert (payload(got)["to"], payload(got)["body"], FACTS in payload(got)) == (TO, BODY, False)
    assert twilio_fake.requests == []


async def test_a_text_composed_by_an_earlier_holder_is_the_one_sent(
        store: Store, db_url: str, twilio_fake: FakeTwilio) -> None:
    clock = Clock()
    text = facts(Phone("617-555-0123", "PRN", "CP"))
    rid = await queue(store, "k1", text)
    async with store.connection() as conn:    # a worker that died after storing its text
        await conn.execute("UPDATE outbox SET payload = (payload - 'facts') || $2::jsonb WHERE id = $1",
                           rid, {"to": TO, "skip": None, "body": "the text stored first"})
    worker, handler = sms_worker(store, twilio_fake.env(), clock)
    try:
        stale = OutboxRow(rid, "sms", "k1", {FACTS: text, "quiet": None}, 1, datetime.now(UTC), None)
        assert (await handler.compose(stale))["body"] == "the text stored first"
        assert await worker.drain() == 1
    finally:
        await worker.stop()
    assert [m["Body"] for m in twilio_fake.sent] == ["the text stored first"]


async def test_dry_run_stores_the_composed_text(store: Store, db_url: str) -> None:
    clock = Clock()
    rid = await queue(store, "k1", facts(Phone("617-555-0123", "PRN", "CP")))
    worker, _ = sms_worker(store, {}, clock)
    try:
        assert await worker.drain() == 1
    finally:
        await worker.stop()
    got = await row(db_url, rid)
    assert got["status"] == "skipped" and json.loads(got["result"]) == {"reason": "dry_run"}
    assert (payload(got)["to"], payload(got)["body"]) == (TO, BODY)


async def _count_writes(store: Store) -> None:
    """Count every UPDATE of an outbox row (in ``outbox_writes``), from now on."""
    async with store.connection() as conn:
        await conn.execute("""
            CREATE TABLE outbox_writes (n bigserial, id bigint, status text);
            CREATE FUNCTION count_outbox_write() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN INSERT INTO outbox_writes (id, status) VALUES (NEW.id, NEW.status); RETURN NEW; END $$;
            CREATE TRIGGER count_outbox_write AFTER UPDATE ON outbox
                FOR EACH ROW EXECUTE FUNCTION count_outbox_write();""")


async def row_writes(url: str) -> dict[int, list[str]]:
    """The statuses each outbox row was written with, per row, in order."""
    conn = await asyncpg.connect(url)
    try:
        found: dict[int, list[str]] = {}
        for r in await conn.fetch("SELECT id, status FROM outbox_writes ORDER BY n"):
            found.setdefault(r["id"], []).append(r["status"])
        return found
    finally:
        await conn.close()


async def test_a_text_that_is_not_sent_is_composed_and_judged_in_one_write(
        store: Store, db_url: str, twilio_fake: FakeTwilio) -> None:
    """Dry run, no number, opted out: the composed text is stored with the verdict (the claim
    and one write per row); a text that is sent is stored before the send (claim, text, verdict)."""
    clock = Clock()
    await _count_writes(store)
    dry = await queue(store, "k-dry", facts(Phone("617-555-0123", "PRN", "CP")))
    none = await queue(store, "k-none", facts(Phone("not a number")))
    worker, _ = sms_worker(store, {}, clock)
    try:
        assert await worker.drain() == 2
    finally:
        await worker.stop()
    writes = await row_writes(db_url)
    assert writes[dry] == ["sending", "skipped"] and writes[none] == ["sending", "skipped"]
    assert (payload(await row(db_url, dry))["to"], payload(await row(db_url, dry))["body"]) == (TO, BODY)
    assert FACTS not in payload(await row(db_url, none))

    sent = await queue(store, "k-sent", facts(Phone("617-555-0123", "PRN", "CP")))
    await drain_one(store, twilio_fake, clock)
    assert (await row_writes(db_url))[sent] == ["sending", "sending", "sent"]
    assert [m["Body"] for m in twilio_fake.sent] == [BODY]



async def test_a_text_naming_a_profile_is_composed_with_its_settings_and_keeps_its_quiet_hours(
        store: Store, db_url: str, twilio_fake: FakeTwilio) -> None:
    """A started channel's row names its settings (a profile) instead of carrying them: it is
    composed with the stored settings, and their quiet hours go into the row with the text, for
    the row's later attempts. A row naming a profile that is not stored is never sent."""
    clock = Clock()
    later = clock().astimezone(ZoneInfo("America/New_York")) + timedelta(hours=2)
    quiet = {"start": later.strftime("%H:00"), "end": (later + timedelta(hours=1)).strftime("%H:00"),
             "tz": "America/New_York"}                      # a window that is not now
    settings = {"region": "US", "clinic": "RadScheduler", "time_format": "%a %d %b %H:%M",
                "tz": "America/New_York", "quiet": quiet, "channel": "scheduling",
                "templates": {"S12": DEFAULT_TEMPLATES["S12"]}}
    key = profile_id(settings)
    async with store.connection() as conn:
        await conn.execute("INSERT INTO notify_profiles (id, settings) VALUES ($1, $2::jsonb)", key, settings)
    own = own_facts([Phone("617-555-0123", "PRN", "CP")], start=START, exam="CT ABDOMEN",
                    location="CT Scanner 1", prep=())
    rid = await queue(store, "k1", {}, {FACTS: own, "event": "S12", PROFILE: key, "order_key": "sms:k1"})
    await drain_one(store, twilio_fake, clock)
    got = await row(db_url, rid)
    assert got["status"] == "sent" and [m["Body"] for m in twilio_fake.sent] == [BODY]
    assert (payload(got)["to"], payload(got)["body"], payload(got)["quiet"]) == (TO, BODY, quiet)
    assert FACTS not in payload(got)

    missing = {FACTS: own, "event": "S12", PROFILE: "0" * 16, "order_key": "sms:k2"}
    lost = await queue(store, "k2", {}, missing)
    await drain_one(store, twilio_fake, clock)
    got = await row(db_url, lost)
    assert got["status"] == "sending" and "RuntimeError" in got["last_error"]   # in doubt: kept
    assert len(twilio_fake.sent) == 1
