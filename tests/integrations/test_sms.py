"""SmsSender with the real twilio SDK against the local fake Twilio."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from radsched_engine.integrations.sms import FIND_SLACK, SmsLookupFailed, SmsSender, SmsSettings
from tests.fakes.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, FakeTwilio

TO = "+16175550123"
BODY = "RadScheduler: MRI booked Tue 04 Mar 09:00. Reply STOP to opt out."
CALLBACK = "https://rad.example.org/twilio/status?appt=SCH123"


@pytest.fixture
async def sender(twilio_fake: FakeTwilio) -> AsyncIterator[SmsSender]:
    async with SmsSender(SmsSettings.from_env(twilio_fake.env(), timeout=5.0)) as sms:
        yield sms


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_send_posts_the_right_form_with_basic_auth(sender: SmsSender, twilio_fake: FakeTwilio) -> None:
    result = await sender.send(TO, BODY, status_callback=CALLBACK)
    assert result.status == "sent" and result.sid is not None and result.sid.startswith("SM")
    assert result.error_code is None and not result.in_doubt
    assert twilio_fake.sent == [{"To": TO, "From": FROM_NUMBER, "Body": BODY, "StatusCallback": CALLBACK}]
    request = twilio_fake.creates()[0]
    token = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {token}"
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"


async def test_no_status_callback_is_not_sent(sender: SmsSender, twilio_fake: FakeTwilio) -> None:
    assert (await sender.send(TO, "hi")).status == "sent"
    assert "StatusCallback" not in twilio_fake.sent[0]


async def test_messaging_service_replaces_from(twilio_fake: FakeTwilio) -> None:
    env = {**twilio_fake.env(), "TWILIO_FROM_NUMBER": "", "TWILIO_MESSAGING_SERVICE_SID": "MG" + "1" * 32}
    async with SmsSender(SmsSettings.from_env(env)) as sms:
        assert (await sms.send(TO, "hi")).status == "sent"
    assert twilio_fake.sent[0]["MessagingServiceSid"] == "MG" + "1" * 32
    assert "From" not in twilio_fake.sent[0]


@pytest.mark.parametrize(("to", "status", "code"), [
    ("+15005550001", "permanent", 21211),
    ("+15005550004", "opted_out", 21610),
    ("+15005550009", "permanent", 21614),
    ("+15005550002", "permanent", 21612),
])
async def test_twilio_error_codes_are_classified(sender: SmsSender, to: str, status: str, code: int) -> None:
    result = await sender.send(to, BODY)
    assert (result.status, result.error_code, result.sid, result.in_doubt) == (status, code, None, False)
    assert to not in result.detail and to[2:] not in result.detail and BODY not in result.detail
    assert str(code) in result.detail


async def test_rate_limit_is_retried(sender: SmsSender, twilio_fake: FakeTwilio) -> None:
    twilio_fake.force(429, 20429)
    result = await sender.send(TO, BODY)
    assert (result.status, result.error_code, result.in_doubt) == ("retry", 20429, False)
    assert twilio_fake.sent == []


async def test_server_error_is_retried_and_in_doubt(sender: SmsSender, twilio_fake: FakeTwilio) -> None:
    twilio_fake.force(500, 20500)
    result = await sender.send(TO, BODY)
    assert (result.status, result.error_code, result.in_doubt) == ("retry", 20500, True)


async def test_gateway_error_without_json_body_is_retried(sender: SmsSender, twilio_fake: FakeTwilio) -> None:
    twilio_fake.force(502, raw_body="<html>bad gateway</html>")
    result = await sender.send(TO, BODY)
    assert (result.status, result.error_code) == ("retry", 502)


async def test_other_client_error_is_permanent(sender: SmsSender, twilio_fake: FakeTwilio) -> None:
    twilio_fake.force(400, 21602)           # message body required
    result = await sender.send(TO, BODY)
    assert (result.status, result.error_code) == ("permanent", 21602)


async def test_wrong_credentials_are_retried_as_a_configuration_alarm(twilio_fake: FakeTwilio) -> None:
    env = {**twilio_fake.env(), "TWILIO_AUTH_TOKEN": "wrong"}
    async with SmsSender(SmsSettings.from_env(env)) as sms:
        result = await sms.send(TO, BODY)
    assert (result.status, result.error_code) == ("retry", 20003)
    assert "TWILIO_AUTH_TOKEN" in result.detail and "wrong" not in result.detail


async def test_a_hanging_twilio_gives_retry_in_doubt_then_find_sent_reconciles(
        twilio_fake: FakeTwilio) -> None:
    since = datetime.now(UTC)
    twilio_fake.force(201, delay=1.0)       # answers (and accepts) only after our timeout
    async with SmsSender(SmsSettings.from_env(twilio_fake.env(), timeout=0.2)) as sms:
        result = await sms.send(TO, BODY)
        assert (result.status, result.sid, result.in_doubt) == ("retry", None, True)
        assert "0.2 s" in result.detail
        for _ in range(200):                # the fake accepts it once its stall ends
            if twilio_fake.sent:
                break
            await asyncio.sleep(0.05)
        assert twilio_fake.sent, "the stalled request never reached the fake"
        assert await sms.find_sent(TO, BODY, since) == twilio_fake.messages[0]["sid"]


async def test_connection_refused_is_retry_and_not_in_doubt(twilio_fake: FakeTwilio) -> None:
    env = {**twilio_fake.env(), "TWILIO_API_BASE_URL": f"http://127.0.0.1:{free_port()}"}
    async with SmsSender(SmsSettings.from_env(env)) as sms:
        result = await sms.send(TO, BODY)
    assert (result.status, result.sid, result.error_code, result.in_doubt) == ("retry", None, None, False)


async def test_twilio_region_in_the_environment_does_not_redirect(
        twilio_fake: FakeTwilio, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_REGION", "ie1")
    monkeypatch.setenv("TWILIO_EDGE", "dublin")
    async with SmsSender(SmsSettings.from_env(twilio_fake.env())) as sms:
        assert (await sms.send(TO, BODY)).status == "sent"


async def test_dry_run_without_credentials_sends_nothing() -> None:
    settings = SmsSettings.from_env({"TWILIO_ACCOUNT_SID": ACCOUNT_SID})
    assert settings.dry_run
    assert settings.missing() == ("TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID")
    async with SmsSender(settings) as sms:
        assert sms.dry_run
        result = await sms.send(TO, BODY)
        assert (result.status, result.sid) == ("skipped_dry_run", None)
        assert "TWILIO_AUTH_TOKEN" in result.detail
        assert await sms.find_sent(TO, BODY, datetime.now(UTC)) is None
        assert not sms.validate_callback(CALLBACK, {"MessageStatus": "sent"}, "c2ln")


def test_settings_from_env() -> None:
    settings = SmsSettings.from_env({
        "TWILIO_ACCOUNT_SID": " AC1 ", "TWILIO_AUTH_TOKEN": "secret", "TWILIO_FROM_NUMBER": "+15005550006",
        "TWILIO_API_BASE_URL": "http://127.0.0.1:9", "TWILIO_TIMEOUT": "2.5"})
    assert (settings.account_sid, settings.timeout, settings.dry_run) == ("AC1", 2.5, False)
    assert "secret" not in repr(settings)
    assert SmsSettings.from_env({}).timeout == 10.0
    with pytest.raises(ValueError, match="TWILIO_TIMEOUT"):
        SmsSettings.from_env({"TWILIO_TIMEOUT": "0"})


async def test_overlong_body_and_empty_number_are_refused_locally(
        sender: SmsSender, twilio_fake: FakeTwilio) -> None:
    assert (await sender.send(TO, "x" * 1601)).status == "permanent"
    assert (await sender.send(" ", BODY)).error_code == 21604
    assert twilio_fake.requests == []


async def test_find_sent_hit_and_misses(sender: SmsSender, twilio_fake: FakeTwilio) -> None:
    since = datetime.now(UTC)
    sid = (await sender.send(TO, BODY)).sid
    assert await sender.find_sent(TO, BODY, since) == sid
    query = twilio_fake.lists()[0].query
    assert query["To"] == TO and "DateSent>" in query
    assert await sender.find_sent(TO, "another text", since) is None
    assert await sender.find_sent("+16175550124", BODY, since) is None
    assert await sender.find_sent(TO, BODY, since + timedelta(hours=1)) is None


async def test_find_sent_ignores_an_older_identical_message(
        sender: SmsSender, twilio_fake: FakeTwilio) -> None:
    twilio_fake.add_message(TO, BODY, created=datetime.now(UTC) - timedelta(days=2))
    assert await sender.find_sent(TO, BODY, datetime.now(UTC) - timedelta(hours=1)) is None


async def test_find_sent_finds_a_message_still_queued(sender: SmsSender, twilio_fake: FakeTwilio) -> None:
    since = datetime.now(UTC) - timedelta(minutes=1)
    sid = twilio_fake.add_message(TO, BODY, date_sent=None, status="queued")
    assert await sender.find_sent(TO, BODY, since) == sid
    assert [("DateSent>" in r.query) for r in twilio_fake.lists()] == [True, False]


async def test_find_sent_accepts_a_local_time_since(sender: SmsSender, twilio_fake: FakeTwilio) -> None:
    from zoneinfo import ZoneInfo
    since = datetime.now(ZoneInfo("America/New_York"))
    sid = (await sender.send(TO, BODY)).sid
    assert await sender.find_sent(TO, BODY, since) == sid
    sent_filter = twilio_fake.lists()[0].query["DateSent>"]
    expected = (since.astimezone(UTC) - FIND_SLACK).replace(microsecond=0)
    assert datetime.fromisoformat(sent_filter.replace("Z", "+00:00")) == expected


async def test_find_sent_raises_when_twilio_cannot_be_asked(
        sender: SmsSender, twilio_fake: FakeTwilio) -> None:
    twilio_fake.force(503, 20503)
    with pytest.raises(SmsLookupFailed):
        await sender.find_sent(TO, BODY, datetime.now(UTC))


async def test_callback_signature_valid_and_forged(sender: SmsSender, twilio_fake: FakeTwilio) -> None:
    params = {"MessageSid": "SM" + "a" * 32, "AccountSid": ACCOUNT_SID, "From": FROM_NUMBER, "To": TO,
              "MessageStatus": "undelivered", "ErrorCode": "30003", "ApiVersion": "2010-04-01"}
    signature = twilio_fake.sign(CALLBACK, params)
    assert sender.validate_callback(CALLBACK, params, signature)
    assert not sender.validate_callback(CALLBACK, {**params, "MessageStatus": "delivered"}, signature)
    assert not sender.validate_callback(CALLBACK.replace("SCH123", "SCH124"), params, signature)
    assert not sender.validate_callback(CALLBACK, params, "")
    assert not sender.validate_callback(CALLBACK, params, "not base64 at all")


async def test_no_number_or_body_in_logs(
        sender: SmsSender, twilio_fake: FakeTwilio, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("twilio").setLevel(logging.DEBUG)
    since = datetime.now(UTC)
    await sender.send(TO, BODY, status_callback=CALLBACK)
    await sender.send("+15005550001", BODY)
    await sender.find_sent(TO, BODY, since)
    out = capsys.readouterr()
    for text in (caplog.text, out.out, out.err):
        assert "5550123" not in text and "5550001" not in text and "MRI booked" not in text
