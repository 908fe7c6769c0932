"""ClaudeAnalyzer with the real anthropic SDK against the local fake Messages API."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from radsched_engine.integrations.claude import (
    DEFAULT_MODEL,
    SYSTEM_PROMPT,
    TOOL,
    TOOL_NAME,
    AiFinding,
    AnalysisFailed,
    ClaudeAnalyzer,
    ClaudeSettings,
)
from tests.fakes.fake_anthropic import API_KEY, FakeAnthropic, text_body, tool_use_body

CONTEXT = {"patient": {"age_band": "40-49", "sex": "F"}, "booking": {"ref": "A0"}, "neighbours": []}
GOOD = {"findings": [
    {"rule": "AI-CONTRAST-SEQUENCE", "severity": "warn", "message": "Barium before CT.", "other": "A1"},
    {"rule": "AI-PREP", "severity": "info", "message": "Fasting needed.", "other": None},
]}


def analyzer_for(fake: FakeAnthropic, **overrides: Any) -> ClaudeAnalyzer:
    return ClaudeAnalyzer(ClaudeSettings.from_env(fake.env(), **overrides))


@pytest.fixture
async def analyzer(anthropic_fake: FakeAnthropic) -> AsyncIterator[ClaudeAnalyzer]:
    async with analyzer_for(anthropic_fake, timeout=5.0) as claude:
        yield claude


async def failure(claude: ClaudeAnalyzer, context: Any = CONTEXT) -> AnalysisFailed:
    with pytest.raises(AnalysisFailed) as info:
        await claude.analyze(context)
    return info.value


async def test_tool_use_answer_is_parsed_and_aliases_mapped_back(
        analyzer: ClaudeAnalyzer, anthropic_fake: FakeAnthropic) -> None:
    anthropic_fake.reply(200, tool_use_body(GOOD))
    findings = await analyzer.analyze(CONTEXT, aliases={"A0": "F:100", "A1": "F:200"})
    assert findings == [
        AiFinding("AI-CONTRAST-SEQUENCE", "warn", "Barium before CT.", "F:200"),
        AiFinding("AI-PREP", "info", "Fasting needed.", None),
    ]
    assert findings[0].to_json() == {"rule": "AI-CONTRAST-SEQUENCE", "severity": "warn",
                                     "message": "Barium before CT.", "other": "F:200",
                                     "source": "ai", "details": {}}


async def test_request_forces_the_tool_and_sends_the_context(
        analyzer: ClaudeAnalyzer, anthropic_fake: FakeAnthropic) -> None:
    assert await analyzer.analyze(CONTEXT) == []        # the fake's default: no findings
    request = anthropic_fake.requests[0]
    assert request.path == "/v1/messages"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    body = request.body
    assert body["model"] == DEFAULT_MODEL and body["system"] == SYSTEM_PROMPT
    assert body["tool_choice"] == {"type": "tool", "name": TOOL_NAME}
    assert body["tools"] == [TOOL]
    assert json.loads(body["messages"][0]["content"]) == CONTEXT
    assert 0 < body["max_tokens"] <= 1024
    schema = body["tools"][0]["input_schema"]["properties"]["findings"]["items"]
    assert schema["properties"]["severity"]["enum"] == ["block", "warn", "info"]


async def test_unknown_alias_becomes_none(analyzer: ClaudeAnalyzer, anthropic_fake: FakeAnthropic) -> None:
    anthropic_fake.reply(200, tool_use_body({"findings": [
        {"rule": "AI-X", "severity": "block", "message": "m", "other": "A9"}]}))
    assert (await analyzer.analyze(CONTEXT, aliases={"A1": "F:2"}))[0].other is None


@pytest.mark.parametrize(("status", "kind"), [(429, "rate_limited"), (500, "server_error"),
                                              (529, "server_error"), (503, "server_error")])
async def test_retried_errors_fail_after_bounded_attempts(
        anthropic_fake: FakeAnthropic, status: int, kind: str) -> None:
    anthropic_fake.reply(status, times=10)
    async with analyzer_for(anthropic_fake, max_retries=2) as claude:
        failed = await failure(claude)
    assert (failed.kind, failed.status) == (kind, status)
    assert len(anthropic_fake.requests) == 3


async def test_a_retry_that_succeeds_returns_findings(anthropic_fake: FakeAnthropic) -> None:
    anthropic_fake.reply(529)
    anthropic_fake.reply(200, tool_use_body(GOOD))
    async with analyzer_for(anthropic_fake, max_retries=2) as claude:
        assert len(await claude.analyze(CONTEXT)) == 2
    assert len(anthropic_fake.requests) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_client_errors_are_not_retried(anthropic_fake: FakeAnthropic, status: int) -> None:
    anthropic_fake.reply(status, times=3)
    async with analyzer_for(anthropic_fake, max_retries=2) as claude:
        failed = await failure(claude)
    assert (failed.kind, failed.status, len(anthropic_fake.requests)) == ("http_error", status, 1)


async def test_timeout_is_bounded_per_attempt(anthropic_fake: FakeAnthropic) -> None:
    anthropic_fake.reply(200, delay=3.0, times=3)
    async with analyzer_for(anthropic_fake, timeout=0.2, max_retries=1) as claude:
        assert (await failure(claude)).kind == "timeout"
    assert len(anthropic_fake.requests) == 2


async def test_a_long_retry_after_is_cut_by_the_deadline(anthropic_fake: FakeAnthropic) -> None:
    anthropic_fake.reply(429, headers={"retry-after": "60"}, times=3)
    async with analyzer_for(anthropic_fake, max_retries=2, deadline=0.5) as claude:
        assert (await failure(claude)).kind == "timeout"
    assert len(anthropic_fake.requests) == 1


async def test_connection_refused(anthropic_fake: FakeAnthropic) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = ClaudeSettings(api_key="k", base_url=f"http://127.0.0.1:{port}", max_retries=1)
    async with ClaudeAnalyzer(settings) as claude:
        assert (await failure(claude)).kind == "connection"


@pytest.mark.parametrize("tool_input", [
    {"findings": {"rule": "AI-X"}},                                              # not a list
    {"findings": "none"},
    {"conflicts": []},                                                           # wrong key
    [],                                                                          # not an object
    {"findings": [{"rule": "AI-X", "severity": "critical", "message": "m"}]},    # unknown severity
    {"findings": [{"rule": "AI-X", "severity": "warn"}]},                        # no message
    {"findings": [{"severity": "warn", "message": "m"}]},                        # no rule
    {"findings": [{"rule": "", "severity": "warn", "message": "m"}]},
    {"findings": [{"rule": "AI-X", "severity": "warn", "message": "m", "other": 3}]},
    {"findings": ["AI-X"]},
    {"findings": [{"rule": "AI-X", "severity": "warn", "message": "m"}] * 21},  # too many
])
async def test_malformed_tool_input_is_invalid(
        analyzer: ClaudeAnalyzer, anthropic_fake: FakeAnthropic, tool_input: Any) -> None:
    anthropic_fake.reply(200, tool_use_body(tool_input))
    assert (await failure(analyzer)).kind == "invalid"
    assert len(anthropic_fake.requests) == 1


@pytest.mark.parametrize("body", [
    text_body("There are no conflicts."),                                        # text only
    tool_use_body(GOOD, tool_name="other_tool"),
    {**tool_use_body(GOOD), "stop_reason": "max_tokens"},
    {**tool_use_body(GOOD), "stop_reason": "refusal"},
])
async def test_answers_without_a_usable_tool_call_are_invalid(
        analyzer: ClaudeAnalyzer, anthropic_fake: FakeAnthropic, body: dict[str, Any]) -> None:
    anthropic_fake.reply(200, body)
    assert (await failure(analyzer)).kind == "invalid"


async def test_a_body_that_is_not_json_is_invalid(
        analyzer: ClaudeAnalyzer, anthropic_fake: FakeAnthropic) -> None:
    anthropic_fake.reply(200, raw="<html>proxy error</html>")
    assert (await failure(analyzer)).kind == "invalid"


async def test_disabled_without_an_api_key_sends_nothing(anthropic_fake: FakeAnthropic) -> None:
    settings = ClaudeSettings.from_env({"ANTHROPIC_BASE_URL": anthropic_fake.base_url})
    assert not settings.enabled
    async with ClaudeAnalyzer(settings) as claude:
        failed = await failure(claude)
    assert (failed.kind, failed.metric_label) == ("disabled", "disabled")
    assert anthropic_fake.requests == []


def test_settings_from_env_and_overrides() -> None:
    settings = ClaudeSettings.from_env({"ANTHROPIC_API_KEY": "sk-secret", "ANTHROPIC_BASE_URL": "http://x:1"},
                                       model="claude-haiku-4-5", timeout=3.0, max_retries=None)
    assert (settings.base_url, settings.model, settings.timeout, settings.max_retries) == (
        "http://x:1", "claude-haiku-4-5", 3.0, 2)
    assert settings.enabled and "sk-secret" not in repr(settings)
    assert settings.total_seconds == 3.0 * 3 + 10.0
    defaults = ClaudeSettings.from_env({})
    assert (defaults.base_url, defaults.timeout, defaults.max_retries) == (
        "https://api.anthropic.com", 20.0, 2)
    with pytest.raises(ValueError):
        ClaudeSettings.from_env({}, timeout=0)


def test_metric_labels() -> None:
    assert [AnalysisFailed(k).metric_label for k in ("timeout", "invalid", "rate_limited", "connection")] == [
        "timeout", "invalid", "failed", "failed"]
