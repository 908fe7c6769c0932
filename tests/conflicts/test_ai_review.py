"""The Claude review after commit: real pipeline, real outbox worker, real anthropic SDK, fake Messages API.

Rows are queued by the conflict_check stage; a worker with a clock the test moves delivers them
to ``AiReviewHandler`` (retries are due when the clock says so, not after real waiting). The
fake records every request, so attempts are counted, and the captured bodies are searched for
the patient's identifiers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from radsched_engine import metrics
from radsched_engine.conflicts.review import AiReviewHandler, ai_review
from radsched_engine.integrations.claude import ClaudeAnalyzer, ClaudeSettings
from radsched_engine.outbox import OutboxWorker, WorkerOptions
from radsched_engine.store import Store
from tests.conflicts.helpers import PATIENT_NAME, Channel, findings, siu
from tests.fakes.fake_anthropic import FakeAnthropic, text_body, tool_use_body
from tests.fakes.fixtures import anthropic_fake  # noqa: F401  (fixture)
from tests.store.helpers import fetch

GOOD = {"findings": [{"rule": "AI-CONTRAST-SEQUENCE", "severity": "warn",
                      "message": "Check the contrast timing against the other booking.", "other": "A1"}]}


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC) + timedelta(seconds=1)

    def __call__(self) -> datetime:
        return self.now


class Review:
    """A channel that queues reviews, and the worker that delivers them."""

    def __init__(self, store: Store, fake: FakeAnthropic, *, max_attempts: int = 3, max_retries: int = 0,
                 timeout: float = 5.0, timezone: str = "UTC") -> None:
        settings = ClaudeSettings.from_env(fake.env(), timeout=timeout, max_retries=max_retries)
        self.analyzer = ClaudeAnalyzer(settings)
        self.handler = AiReviewHandler(self.analyzer, store, max_attempts=max_attempts)
        self.clock = Clock()
        self.worker = OutboxWorker(store, [self.handler], WorkerOptions(backoff_max=60.0),
                                   clock=self.clock)
        self.channel = Channel(store, services={"claude": self.analyzer}, timezone=timezone)
        self.store = store

    async def settle(self, rounds: int = 20) -> None:
        """Deliver until no row is open, moving the clock past every backoff."""
        for _ in range(rounds):
            await self.worker.drain()
            async with self.store.connection() as conn:
                open_rows = await conn.fetchval(
                    "SELECT count(*) FROM outbox WHERE status IN ('pending', 'retry', 'sending')")
            if not open_rows:
                return
            self.clock.now += timedelta(hours=2)
        raise AssertionError("outbox rows still open")


@pytest.fixture
async def review(store: Store, anthropic_fake: FakeAnthropic) -> AsyncIterator[Review]:  # noqa: F811
    r = Review(store, anthropic_fake)
    yield r
    await r.analyzer.close()


def analyses(result: str) -> float:
    return metrics.AI_ANALYSES.labels(result)._value.get()


async def outbox_rows(url: str) -> list[dict[str, Any]]:
    return await fetch(url, "SELECT status, attempts, last_error, result FROM outbox ORDER BY id")


async def book_pair(channel: Channel, first: str = "A1", second: str = "A2") -> None:
    """``first`` books CT1; ``second`` (another patient) the same slot: a room conflict."""
    await channel.send(siu(control="C1", filler=first, mrn="MRN9001"))
    await channel.send(siu(control="C2", filler=second, mrn="MRN9002", start="20260310091500"))


async def test_a_good_answer_is_stored_beside_the_rule_findings(
        review: Review, anthropic_fake: FakeAnthropic, db_url: str) -> None:  # noqa: F811
    anthropic_fake.default_input = GOOD
    ok = analyses("ok")
    await book_pair(review.channel)
    await review.settle()
    assert analyses("ok") == ok + 2 and len(anthropic_fake.requests) == 2
    assert [r["status"] for r in await outbox_rows(db_url)] == ["sent", "sent"]
    entries = await findings(db_url, "A2")
    assert {(e["rule"], e["source"]) for e in entries} == {
        ("RES-ROOM-OVERLAP", "rules"), ("AI-CONTRAST-SEQUENCE", "ai")}
    [ai] = [e for e in entries if e["source"] == "ai"]
    assert ai["severity"] == "warn" and ai["other"] == "scheduling|F:A1" and ai["other_id"] is not None
    # a second review replaces the AI findings, it does not add to them
    await review.channel.send(siu("S14", "C3", "A2", mrn="MRN9002", start="20260310091500",
                                  sent="20260301130000", resources=False))
    await review.settle()
    assert [e["source"] for e in await findings(db_url, "A2")].count("ai") == 1


async def test_the_request_carries_no_direct_identifiers(
        review: Review, anthropic_fake: FakeAnthropic) -> None:  # noqa: F811
    await book_pair(review.channel, "FILL7731", "FILL7732")
    await review.settle()
    assert len(anthropic_fake.requests) == 2
    for request in anthropic_fake.requests:
        raw = request.raw.decode()
        for secret in (*PATIENT_NAME, "MRN9001", "MRN9002", "5550147", "4135550147", "19700101",
                       "1970-01-01", "1 Main St", "FILL773", "scheduling|"):
            assert secret.lower() not in raw.lower(), secret
        sent = json.loads(request.body["messages"][0]["content"])
        assert sent["patient"] == {"age_band": "50-59", "sex": "F"}
        assert request.body["tool_choice"] == {"type": "tool", "name": "report_findings"}


@pytest.mark.parametrize("status", [429, 500])
async def test_errors_are_retried_a_bounded_number_of_times(
        store: Store, anthropic_fake: FakeAnthropic, db_url: str, status: int) -> None:  # noqa: F811
    anthropic_fake.reply(status, times=50)
    review = Review(store, anthropic_fake, max_attempts=3, max_retries=1)
    failed = analyses("failed")
    try:
        await review.channel.send(siu(control="C1", filler="A1", mrn="MRN9001"))
        await review.settle()
    finally:
        await review.analyzer.close()
    assert len(anthropic_fake.requests) == 3 * 2           # outbox attempts x (1 + SDK retries)
    [row] = await outbox_rows(db_url)
    assert row["status"] == "dead" and row["attempts"] == 3
    assert f"HTTP {status}" in row["last_error"] and "MRN" not in row["last_error"]
    assert analyses("failed") == failed + 3
    assert [e["rule"] for e in await findings(db_url, "A1", prep=True)] == ["PREP-INSTRUCTIONS"]


async def test_a_timeout_is_retried_then_given_up(
        store: Store, anthropic_fake: FakeAnthropic, db_url: str) -> None:  # noqa: F811
    anthropic_fake.reply(200, delay=3.0, times=10)
    review = Review(store, anthropic_fake, max_attempts=2, timeout=0.3)
    timeouts = analyses("timeout")
    try:
        await review.channel.send(siu(control="C1", filler="A1", mrn="MRN9001"))
        await review.channel.send(siu(control="C2", filler="A2", mrn="MRN9002"))
        await review.settle()
    finally:
        await review.analyzer.close()
    assert len(anthropic_fake.requests) == 2 * 2
    assert [r["status"] for r in await outbox_rows(db_url)] == ["dead", "dead"]
    assert analyses("timeout") == timeouts + 4
    assert [e["rule"] for e in await findings(db_url, "A2")] == ["RES-ROOM-OVERLAP"]


@pytest.mark.parametrize("answer", [
    {"body": text_body("I think it is fine.")},                                   # no tool call
    {"body": tool_use_body({"findings": [{"rule": "X", "severity": "fatal", "message": "m"}]})},
    {"body": tool_use_body({"verdict": "ok"})},                                   # wrong shape
    {"raw": "{\"type\": \"message\", \"content\": [tru"},                         # not JSON
])
async def test_nonsense_is_dead_at_once_and_rules_stand(
        store: Store, anthropic_fake: FakeAnthropic, db_url: str, answer: dict[str, Any]) -> None:  # noqa: F811
    anthropic_fake.reply(200, **answer, times=10)
    review = Review(store, anthropic_fake, max_attempts=3)
    invalid = analyses("invalid")
    try:
        await book_pair(review.channel)
        await review.settle()
    finally:
        await review.analyzer.close()
    assert len(anthropic_fake.requests) == 2                # one per row: nonsense is not retried
    assert [r["status"] for r in await outbox_rows(db_url)] == ["dead", "dead"]
    assert analyses("invalid") == invalid + 2
    assert [(e["rule"], e["source"]) for e in await findings(db_url, "A2")] == [
        ("RES-ROOM-OVERLAP", "rules")]


async def test_a_transient_failure_then_success_stores_the_answer(
        review: Review, anthropic_fake: FakeAnthropic, db_url: str) -> None:  # noqa: F811
    anthropic_fake.reply(529)
    anthropic_fake.default_input = GOOD
    await review.channel.send(siu(control="C1", filler="A1", mrn="MRN9001"))
    await review.settle()
    assert len(anthropic_fake.requests) == 2
    [row] = await outbox_rows(db_url)
    assert (row["status"], row["attempts"]) == ("sent", 2)
    assert [e["source"] for e in await findings(db_url, "A1")] == ["ai"]


async def test_a_cancelled_appointment_is_not_reviewed(
        review: Review, anthropic_fake: FakeAnthropic, db_url: str) -> None:  # noqa: F811
    await review.channel.send(siu(control="C1", filler="A1", mrn="MRN9001"))
    await review.channel.send(siu("S15", "C2", "A1", mrn="MRN9001", status="Cancelled",
                                  sent="20260301130000", resources=False))
    await review.settle()
    assert anthropic_fake.requests == []
    [row] = await outbox_rows(db_url)
    assert row["status"] == "skipped" and json.loads(row["result"]) == {"reason": "inactive"}


async def test_without_a_key_nothing_is_built_and_disabled_is_counted(store: Store) -> None:
    disabled = analyses("disabled")
    assert ai_review({}, store) == (None, None)
    assert ai_review({"ANTHROPIC_API_KEY": "  "}, store) == (None, None)
    assert analyses("disabled") == disabled + 2


async def test_the_environment_configures_the_review(store: Store, anthropic_fake: FakeAnthropic) -> None:  # noqa: F811
    env = {**anthropic_fake.env(), "RADSCHED_AI_TIMEOUT": "1.5", "RADSCHED_AI_MAX_RETRIES": "0",
           "RADSCHED_AI_CONCURRENCY": "3", "RADSCHED_AI_MAX_ATTEMPTS": "5",
           "RADSCHED_AI_MODEL": "claude-haiku-4-5"}
    analyzer, handler = ai_review(env, store)
    try:
        assert analyzer is not None and handler is not None
        assert (analyzer.settings.timeout, analyzer.settings.max_retries, analyzer.settings.model) == (
            1.5, 0, "claude-haiku-4-5")
        assert analyzer.settings.base_url == anthropic_fake.base_url
        assert (handler.kind, handler.concurrency, handler.max_attempts) == ("ai_analysis", 3, 5)
        assert handler.lease * 0.9 > analyzer.settings.total_seconds
    finally:
        await analyzer.close()


async def test_times_sent_are_local_to_the_facility(store: Store, anthropic_fake: FakeAnthropic) -> None:  # noqa: F811
    review = Review(store, anthropic_fake, timezone="America/New_York")
    try:
        await review.channel.send(siu(control="C1", filler="A1", mrn="MRN9001", start="20260310083000"))
        await review.settle()
    finally:
        await review.analyzer.close()
    [request] = anthropic_fake.requests
    booking = json.loads(request.body["messages"][0]["content"])["booking"]
    assert (booking["weekday"], booking["time_of_day"]) == ("Tue", "08:30")
