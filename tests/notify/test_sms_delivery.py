"""The sms outbox handler with the real twilio SDK against the fake Twilio, driven through the real worker."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from radsched_engine.store import Store
from tests.fakes.fake_twilio import FakeTwilio
from tests.outbox.helpers import Clock, row, rows
from tests.store.helpers import fetch

from .helpers import TO, Switch, queue_sms, sms_worker

BODY = "RadScheduler: your CT is booked for Tue 01 Dec 09:30. Reply STOP to opt out."


def result(got: dict) -> dict:
    return json.loads(got["result"]) if got["result"] else {}


async def test_success_records_the_sid(store: Store, db_url: str, twilio_fake: FakeTwilio) -> None:
    clock = Clock()
    rid = await queue_sms(store, "k1", BODY)
    worker, _ = sms_worker(store, twilio_fake.env(), clock, callback="https://rad.example.org/twilio/status")
    try:
        assert await worker.drain() == 1
    finally:
        await worker.stop()
    got = await row(db_url, rid)
    assert got["status"] == "sent" and got["attempts"] == 1
    assert result(got)["sid"] == twilio_fake.messages[0]["sid"]
    assert twilio_fake.sent == [{"To": TO, "From": twilio_fake.from_number, "Body": BODY,
                                 "StatusCallback": "https://rad.example.org/twilio/status"}]


@pytest.mark.parametrize(("to", "code"), [("+15005550001", 21211), ("+15005550009", 21614)])
async def test_permanent_refusals_are_dead_lettered_without_retry(
        store: Store, db_url: str, twilio_fake: FakeTwilio, to: str, code: int) -> None:
    clock = Clock()
    rid = await queue_sms(store, "k1", BODY, to=to)
    worker, _ = sms_worker(store, twilio_fake.env(), clock)
    try:
        await worker.drain()
        clock.advance(3600)
        assert await worker.drain() == 0
    finally:
        await worker.stop()
    got = await row(db_url, rid)
    assert (got["status"], got["attempts"], result(got)) == ("dead", 1, {"error_code": code})
    assert str(code) in got["last_error"] and to not in got["last_error"]
    assert len(twilio_fake.creates()) == 1


async def test_stop_reply_opts_the_number_out(store: Store, db_url: str, twilio_fake: FakeTwilio) -> None:
    clock = Clock()
    stop = "+15005550004"
    first = await queue_sms(store, "k1", BODY, to=stop, order_key="p1")
    later = await queue_sms(store, "k2", BODY + " (moved)", to=stop, order_key="p1")
    worker, _ = sms_worker(store, twilio_fake.env(), clock)
    try:
        await worker.drain()
    finally:
        await worker.stop()
    a, b = await row(db_url, first), await row(db_url, later)
    assert (a["status"], result(a)) == ("skipped", {"error_code": 21610, "reason": "opted_out"})
    assert (b["status"], result(b)) == ("skipped", {"reason": "opted_out"})
    assert len(twilio_fake.creates()) == 1           # the second one never reached Twilio
    assert [r["phone"] for r in await fetch(db_url, "SELECT phone FROM sms_opt_outs")] == [stop]


async def test_rate_limit_then_success(store: Store, db_url: str, twilio_fake: FakeTwilio) -> None:
    clock = Clock()
    twilio_fake.force(429, 20429)
    rid = await queue_sms(store, "k1", BODY)
    worker, _ = sms_worker(store, twilio_fake.env(), clock)
    try:
        await worker.drain()
        got = await row(db_url, rid)
        assert (got["status"], got["attempts"], result(got)) == ("retry", 1, {"error_code": 20429})
        assert await worker.drain() == 0           # backing off
        clock.advance(600)
        await worker.drain()
    finally:
        await worker.stop()
    got = await row(db_url, rid)
    assert (got["status"], got["attempts"]) == ("sent", 2)
    assert len(twilio_fake.sent) == 1 and twilio_fake.lists() == []   # 429 is not in doubt


async def test_500_storm_then_recovery_sends_exactly_once(
        store: Store, db_url: str, twilio_fake: FakeTwilio) -> None:
    clock = Clock()
    for _ in range(6):                             # create and list both fail for a while
        twilio_fake.force(500, 20500)
    rid = await queue_sms(store, "k1", BODY)
    worker, _ = sms_worker(store, twilio_fake.env(), clock, max_attempts=10)
    try:
        for _ in range(8):
            await worker.drain()
            clock.advance(3600)
    finally:
        await worker.stop()
    got = await row(db_url, rid)
    assert (got["status"], got["attempts"]) == ("sent", 7)
    methods = [r.method for r in twilio_fake.requests]
    # The first 500 may hide an accepted text: never resent until a lookup says it was not.
    assert methods == ["POST"] + ["GET"] * 5 + ["GET", "GET", "POST"]
    assert len(twilio_fake.sent) == 1


async def test_500_storm_longer_than_max_attempts_is_dead_lettered(
        store: Store, db_url: str, twilio_fake: FakeTwilio) -> None:
    clock = Clock()
    for _ in range(20):
        twilio_fake.force(500, 20500)
    rid = await queue_sms(store, "k1", BODY)
    worker, _ = sms_worker(store, twilio_fake.env(), clock, max_attempts=4)
    try:
        for _ in range(6):
            await worker.drain()
            clock.advance(3600)
    finally:
        await worker.stop()
    got = await row(db_url, rid)
    assert (got["status"], got["attempts"]) == ("dead", 4)
    assert got["last_error"].startswith("gave up after 4 attempts: cannot tell whether")
    assert result(got)["in_doubt"] is True
    assert [r.method for r in twilio_fake.requests] == ["POST", "GET", "GET", "GET"]


async def test_hang_past_the_timeout_then_accepted_is_not_sent_twice(
        store: Store, db_url: str, twilio_fake: FakeTwilio) -> None:
    clock = Clock()
    twilio_fake.force(201, delay=1.0)              # answers, and accepts, only after our timeout
    rid = await queue_sms(store, "k1", BODY)
    worker, _ = sms_worker(store, twilio_fake.env(), clock, timeout=0.2)
    try:
        await worker.drain()
        got = await row(db_url, rid)
        assert got["status"] == "sending" and result(got)["in_doubt"] is True
        assert "no answer within 0.2 s" in got["last_error"]
        assert twilio_fake.sent == []              # we gave up before Twilio answered
        async with asyncio.timeout(20):
            while not twilio_fake.sent:
                await asyncio.sleep(0.02)
        clock.advance(3600)
        await worker.drain()
    finally:
        await worker.stop()
    got = await row(db_url, rid)
    assert (got["status"], result(got)["reconciled"]) == ("sent", True)
    assert result(got)["sid"] == twilio_fake.messages[0]["sid"]
    assert len(twilio_fake.creates()) == 1 and len(twilio_fake.sent) == 1


async def test_hang_past_the_timeout_then_refused_is_sent_once_more(
        store: Store, db_url: str, twilio_fake: FakeTwilio) -> None:
    clock = Clock()
    twilio_fake.force(503, 20503, delay=1.0)       # hangs, then fails: nothing was accepted
    rid = await queue_sms(store, "k1", BODY)
    worker, _ = sms_worker(store, twilio_fake.env(), clock, timeout=0.2)
    try:
        await worker.drain()
        clock.advance(3600)
        await worker.drain()
    finally:
        await worker.stop()
    got = await row(db_url, rid)
    assert got["status"] == "sent" and "reconciled" not in result(got)
    assert [r.method for r in twilio_fake.requests] == ["POST", "GET", "GET", "POST"]
    assert len(twilio_fake.sent) == 1


async def test_twilio_down_for_a_while_then_back(store: Store, db_url: str, twilio_fake: FakeTwilio) -> None:
    """All texts delivered, in order per patient, none twice."""
    clock = Clock()
    switch = Switch(int(twilio_fake.base_url.rsplit(":", 1)[1]))
    await switch.up()
    await switch.down()                            # Twilio unreachable: connection refused
    expected: dict[str, list[str]] = defaultdict(list)
    for n in range(4):
        for patient in ("a", "b", "c"):
            to = {"a": "+16175550123", "b": "+16175550124", "c": "+16175550125"}[patient]
            body = f"text {n} for patient {patient}"
            await queue_sms(store, f"{patient}{n}", body, to=to, order_key=f"patient-{patient}")
            expected[to].append(body)
    env = {**twilio_fake.env(), "TWILIO_API_BASE_URL": switch.base_url}
    worker, _ = sms_worker(store, env, clock, max_attempts=20, concurrency=2)
    try:
        for _ in range(5):                         # a few rounds of failures while down
            await worker.drain()
            clock.advance(900)
        waiting = await rows(db_url)
        assert {r["status"] for r in waiting} == {"retry", "pending"}
        assert sorted(r["attempts"] for r in waiting if r["status"] == "retry") == [5, 5, 5]
        assert twilio_fake.requests == []
        await switch.up()
        for _ in range(10):
            await worker.drain()
            clock.advance(900)
    finally:
        await worker.stop()
        await switch.down()
    assert {r["status"] for r in await rows(db_url)} == {"sent"}
    got: dict[str, list[str]] = defaultdict(list)
    for form in twilio_fake.sent:
        got[form["To"]].append(form["Body"])
    assert got == expected                         # every text once, each patient's in order
    assert len(twilio_fake.creates()) == 12


async def test_quiet_hours_hold_without_spending_attempts(
        store: Store, db_url: str, twilio_fake: FakeTwilio) -> None:
    clock = Clock()
    now = datetime.now(UTC)
    start = (now - timedelta(hours=1)).strftime("%H:00")
    end = (now + timedelta(hours=1)).strftime("%H:00")
    rid = await queue_sms(store, "k1", BODY, quiet={"start": start, "end": end, "tz": "UTC"})
    worker, _ = sms_worker(store, twilio_fake.env(), clock)
    try:
        await worker.drain()
        got = await row(db_url, rid)
        assert (got["status"], got["attempts"], result(got)["reason"]) == ("pending", 0, "quiet_hours")
        assert got["next_attempt_at"].strftime("%H:%M") == end and twilio_fake.requests == []
        clock.advance(7200)
        await worker.drain()
    finally:
        await worker.stop()
    got = await row(db_url, rid)
    assert (got["status"], got["attempts"]) == ("sent", 1)


async def test_dry_run_records_the_text_and_sends_nothing(store: Store, db_url: str) -> None:
    clock = Clock()
    rid = await queue_sms(store, "k1", BODY)
    no_phone = await queue_sms(store, "k2", BODY, to=None, skip="not_mobile")
    worker, handler = sms_worker(store, {}, clock)
    assert handler.sender.dry_run
    try:
        await worker.drain()
    finally:
        await worker.stop()
    got = await row(db_url, rid)
    assert (got["status"], result(got)) == ("skipped", {"reason": "dry_run"})
    assert json.loads(got["payload"])["body"] == BODY
    skipped = await row(db_url, no_phone)
    assert (skipped["status"], result(skipped)) == ("skipped", {"reason": "no_phone", "detail": "not_mobile"})
